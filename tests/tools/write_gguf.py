#!/usr/bin/python3
"""Writes a GGUF (v3, all F32) of an HF Qwen2 checkpoint for llama.cpp (the parity reference).

    write_gguf.py --model DIR --out model.gguf

Reads config.json, the safetensors (header + raw bytes, no torch) and tokenizer.json
itself; writes the qwen2 architecture metadata, the gpt2/qwen2 BPE tokenizer and the
tensors under llama.cpp's names (the map of convert_hf_to_gguf.py for Qwen2; no Q/K
permutation: Qwen2 uses the NEOX/rotate-half RoPE in both). Pads the vocabulary to
config.json's vocab_size with [PAD{i}] tokens as convert_hf_to_gguf.py does.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen2_numpy_ref import read_checkpoint  # noqa: E402

ALIGNMENT = 32
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def gguf_string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def kv(key, value_type, value):
    out = gguf_string(key) + struct.pack("<I", value_type)
    if value_type == U32:
        return out + struct.pack("<I", value)
    if value_type == I32:
        return out + struct.pack("<i", value)
    if value_type == F32:
        return out + struct.pack("<f", value)
    if value_type == BOOL:
        return out + struct.pack("<?", value)
    if value_type == STRING:
        return out + gguf_string(value)
    raise ValueError(value_type)


def kv_array(key, element_type, values):
    out = gguf_string(key) + struct.pack("<IIQ", ARRAY, element_type, len(values))
    if element_type == STRING:
        return out + b"".join(gguf_string(v) for v in values)
    if element_type == I32:
        return out + np.asarray(values, dtype="<i4").tobytes()
    raise ValueError(element_type)


def tensor_map(config):
    """HF name -> GGUF name (llama.cpp's LLM_ARCH_QWEN2 tensors)."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not config.get("tie_word_embeddings", False):
        names["lm_head.weight"] = "output.weight"
    per_block = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for l in range(config["num_hidden_layers"]):
        for hf, gg in per_block.items():
            names[f"model.layers.{l}.{hf}"] = f"blk.{l}.{gg}"
    return names


def tokenizer_metadata(path, vocab_size):
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    tokens = [None] * vocab_size
    types = [TOKEN_UNUSED] * vocab_size
    for text, i in tok["model"]["vocab"].items():
        if i < vocab_size:
            tokens[i], types[i] = text, TOKEN_NORMAL
    for added in tok.get("added_tokens", []):
        i = added["id"]
        if i < vocab_size:
            tokens[i] = added["content"]
            types[i] = TOKEN_CONTROL if added.get("special") else TOKEN_USER_DEFINED
    for i in range(vocab_size):
        if tokens[i] is None:
            tokens[i] = f"[PAD{i}]"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    ids = {t: i for i, t in enumerate(tokens)}
    out = [
        kv("tokenizer.ggml.model", STRING, "gpt2"),
        kv("tokenizer.ggml.pre", STRING, "qwen2"),
        kv_array("tokenizer.ggml.tokens", STRING, tokens),
        kv_array("tokenizer.ggml.token_type", I32, types),
        kv_array("tokenizer.ggml.merges", STRING, merges),
        kv("tokenizer.ggml.add_bos_token", BOOL, False),
    ]
    for key, text in (("eos_token_id", "<|endoftext|>"), ("padding_token_id", "<|endoftext|>"),
                      ("bos_token_id", "<|endoftext|>")):
        if text in ids:
            out.append(kv(f"tokenizer.ggml.{key}", U32, ids[text]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    weights = read_checkpoint(args.model)

    metadata = [
        kv("general.architecture", STRING, "qwen2"),
        kv("general.name", STRING, "nla-test"),
        kv("general.alignment", U32, ALIGNMENT),
        kv("general.file_type", U32, 0),  # all F32
        kv("qwen2.context_length", U32, config.get("max_position_embeddings", 32768)),
        kv("qwen2.embedding_length", U32, config["hidden_size"]),
        kv("qwen2.block_count", U32, config["num_hidden_layers"]),
        kv("qwen2.feed_forward_length", U32, config["intermediate_size"]),
        kv("qwen2.attention.head_count", U32, config["num_attention_heads"]),
        kv("qwen2.attention.head_count_kv", U32, config["num_key_value_heads"]),
        kv("qwen2.rope.freq_base", F32, float(config["rope_theta"])),
        kv("qwen2.attention.layer_norm_rms_epsilon", F32, float(config["rms_norm_eps"])),
    ]
    metadata += tokenizer_metadata(os.path.join(args.model, "tokenizer.json"), config["vocab_size"])

    infos, blobs, offset = [], [], 0
    for hf, gg in tensor_map(config).items():
        array = np.ascontiguousarray(weights[hf], dtype="<f4")
        dims = list(reversed(array.shape))  # ggml ne[0] is the innermost dimension
        infos.append(gguf_string(gg) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", 0, offset))  # type 0 = F32
        data = array.tobytes()
        pad = (-len(data)) % ALIGNMENT
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad

    header = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(metadata)) + b"".join(metadata) + b"".join(infos)
    header += b"\0" * ((-len(header)) % ALIGNMENT)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
