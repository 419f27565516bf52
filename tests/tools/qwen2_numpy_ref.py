#!/usr/bin/python3
"""Independent float64 numpy forward of Qwen2ForCausalLM (the reference of tests/model).

Reads config.json and the safetensors files itself (header JSON + raw bytes, no torch,
no nla code), runs the model in float64 and writes the logits and every block's output
(layer l = output of block l, before the final norm) as an F64 safetensors file.

    qwen2_numpy_ref.py --model DIR --input input.json --out ref.safetensors
input.json: {"input_ids": [[...], ...], "attention_mask": [[...], ...]}   (mask optional)
Positions follow the mask as in transformers' generate(): cumsum(mask) - 1, pads at 0.
Optional "steering": [{"layer": l, "vector": [...], "scale": s, "positions": [...]}]: s * vector
added to the residual after block l at those position ids (all when absent or empty).
"""
import argparse
import json
import os
import struct

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        buf = raw[base + begin:base + end]
        dtype = info["dtype"]
        if dtype == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(buf, dtype={"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype])
        tensors[name] = array.astype(np.float64).reshape(info["shape"])
    return tensors


def read_checkpoint(directory):
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        tensors.update(read_safetensors(os.path.join(directory, name)))
    return tensors


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def rms_norm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(config, w, input_ids, attention_mask, steering=()):
    c = config["hidden_size"]
    n_heads = config["num_attention_heads"]
    n_kv = config["num_key_value_heads"]
    d = c // n_heads
    eps = config["rms_norm_eps"]
    theta = config["rope_theta"]
    b, t = input_ids.shape

    x = w["model.embed_tokens.weight"][input_ids]  # (B, T, C)
    positions = np.maximum(np.cumsum(attention_mask, axis=-1) - 1, 0)  # (B, T)
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)  # (D/2)
    angles = positions[..., None] * inv_freq  # (B, T, D/2)
    emb = np.concatenate([angles, angles], axis=-1)[:, None]  # (B, 1, T, D)
    cos, sin = np.cos(emb), np.sin(emb)
    allowed = np.tril(np.ones((t, t), dtype=bool))[None, None] & (attention_mask[:, None, None, :] > 0)
    bias = np.where(allowed, 0.0, -1e300)  # (B, 1, T, T); finite so padded rows stay finite

    hidden = []
    for l in range(config["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = h @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]
        k = h @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]
        v = h @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]
        q = q.reshape(b, t, n_heads, d).transpose(0, 2, 1, 3)  # (B, H, T, D)
        k = k.reshape(b, t, n_kv, d).transpose(0, 2, 1, 3)  # (B, KV, T, D)
        v = v.reshape(b, t, n_kv, d).transpose(0, 2, 1, 3)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, n_heads // n_kv, axis=1)  # HF repeat_kv: head h uses kv head h // G
        v = np.repeat(v, n_heads // n_kv, axis=1)
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias  # (B, H, T, T)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        a = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, c)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
        for steer in steering:  # scale * vector after block l, at the listed position ids (or all)
            if steer["layer"] != l:
                continue
            addition = steer["scale"] * np.asarray(steer["vector"], dtype=np.float64)  # (C)
            hit = np.ones((b, t), dtype=bool)
            if steer.get("positions"):
                hit = np.isin(positions, steer["positions"])
            x = x + hit[..., None] * addition
        hidden.append(x)
    h = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if config.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return h @ head.T, hidden


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    with open(args.input) as f:
        request = json.load(f)
    input_ids = np.array(request["input_ids"], dtype=np.int64)
    mask = np.array(request.get("attention_mask", np.ones_like(input_ids).tolist()), dtype=np.int64)
    logits, hidden = forward(config, read_checkpoint(args.model), input_ids, mask, request.get("steering", []))
    out = {"logits": logits}
    for l, h in enumerate(hidden):
        out[f"hidden.{l}"] = h
    write_safetensors(args.out, out)


if __name__ == "__main__":
    main()
