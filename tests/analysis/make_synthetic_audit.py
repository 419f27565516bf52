#!/usr/bin/python3
"""Writes a synthetic RUN/audit.h5 (+ RUN/summary.csv) in the layout `nla steer-audit` writes
(format "nla-steer-audit", version 1; analysis/README.md), with a known effect:

  vector  cos_v (and proj_v) of the reconstruction rises with the scale, the mention rate
          rises, KL rises, the activation's own cos with v rises faster than the description's;
  random  cos_v flat (noise around the unsteered value), mentions flat, KL rises.

Scale 0 is stored under both directions (the same rows). Some answers fail (NaN cos_v,
proj_v, cos_dir); at (vector, scale SCALES[2]) every slot of prompt FAILED_PROMPT fails, so
that prompt has no value there and drops out of that cell's pairs. Prompt 0's vector
continuations hold a '|' and a newline (the report must escape them). `fmt` and `version`
write another format or version; `drop` leaves a dataset out. For the analysis tests only."""
import csv
import json
import os
import sys

import h5py
import numpy as np

SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)
FAILED_PROMPT = 3
CONCEPT_WORDS = ("ocean", "wave")


def mean_or_nan(values):
    values = values[np.isfinite(values)]
    return (float(values.mean()), float(np.median(values)), float(values.std()), int(values.size)) if values.size \
        else (float("nan"), float("nan"), float("nan"), 0)


def make(run_dir, n_prompts=20, slots=4, scales=SCALES, seed=0, fmt="nla-steer-audit", version=1,
         concept_words=CONCEPT_WORDS, drop=None):
    """Writes run_dir/audit.h5 and run_dir/summary.csv; returns the path of audit.h5."""
    rng = np.random.default_rng(seed)
    median_norm, vector_norm, layer = 40.0, 12.0, 6
    scales = np.asarray(scales, dtype=float)
    prompt_offset = rng.normal(0, 0.03, n_prompts)  # prompts differ: what pairing by prompt removes
    rows = {k: [] for k in ("direction", "scale", "prompt", "slot", "position", "cos_v", "proj_v", "cos_dir",
                            "act_cos_v", "act_proj_v", "kl", "mentions", "failed", "description", "explanation")}
    continuations = {k: [] for k in ("direction", "scale", "prompt", "text", "tokens")}
    unsteered = None
    for direction in ("vector", "random"):
        for scale in scales:
            if scale == 0 and unsteered is not None:  # the same unsteered rows under both directions
                cells, texts = unsteered
            else:
                cells, texts = [], []
                for p in range(n_prompts):
                    steered = direction == "vector"
                    texts.append({"text": (f"Prompt {p} continues | at scale {scale:g}\n"
                                           if p == 0 and steered else f"continuation of prompt {p} at {scale:g}. ") +
                                  ("the ocean waves " if steered and scale > 0 else "a plain sentence ") * 12,
                                  "tokens": 48})
                    for k in range(slots):
                        cos = 0.05 + prompt_offset[p] + rng.normal(0, 0.04)
                        act = 0.02 + rng.normal(0, 0.01)
                        if steered:
                            cos += 0.1 * scale
                            act += scale / np.sqrt(scale ** 2 + 1.0) * 0.9
                        rate = min(0.9, 0.05 + 0.2 * scale) if steered else 0.05
                        mention = int(rng.random() < rate)
                        kl = 0.0 if scale == 0 else 0.15 * scale ** 2 * rng.uniform(0.5, 1.5)
                        failed = int(rng.random() < 0.05 or (steered and scale == scales[2] and p == FAILED_PROMPT))
                        norm = median_norm * (1 + 0.1 * scale)
                        recon_cos = np.nan if failed else cos
                        explanation = ("The text describes the ocean and its waves." if mention
                                       else "The text is an ordinary sentence about cooking.")
                        cells.append({"prompt": p, "slot": k, "position": 10 + 7 * k, "cos_v": recon_cos,
                                      "proj_v": recon_cos * norm, "cos_dir": recon_cos if steered else
                                      (np.nan if failed else rng.normal(0.3 * scale / (1 + scale), 0.04)),
                                      "act_cos_v": act, "act_proj_v": act * norm, "kl": kl, "mentions": mention,
                                      "failed": failed, "explanation": explanation,
                                      "description": ("<explanation>" + explanation + "</explanation>") if not failed
                                      else "<explanation>" + explanation[:20]})
                if scale == 0:
                    unsteered = (cells, texts)
            for cell in cells:
                rows["direction"].append(direction)
                rows["scale"].append(scale)
                for key, value in cell.items():
                    rows[key].append(value)
            for p, text in enumerate(texts):
                continuations["direction"].append(direction)
                continuations["scale"].append(scale)
                continuations["prompt"].append(p)
                continuations["text"].append(text["text"])
                continuations["tokens"].append(text["tokens"])
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "audit.h5")
    text = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs["format"] = fmt
        f.attrs["version"] = np.int64(version)
        f.attrs["layer"] = np.int64(layer)
        f.attrs["median_norm"] = median_norm
        f.attrs["vector_norm"] = vector_norm
        f.attrs["concept_words"] = json.dumps(list(concept_words))
        f.attrs["provenance"] = json.dumps({"nla_version": "0.0.0-synthetic", "command_line":
                                            "nla steer-audit --layer 6 --vector ocean.npy", "config": {"scales": list(
                                                scales)}, "device": "cpu", "precision": "float32"})
        for name, value in (("model", "models/synthetic"), ("av", "ckpt/av"), ("ar", "ckpt/ar"),
                            ("vector", "ocean.npy")):
            f.attrs[name] = value
        f.attrs["seed"] = np.int64(seed)
        f["scales"] = scales
        f.create_dataset("prompts", data=[f"Prompt number {p}:" for p in range(n_prompts)], dtype=text)
        for name, values in rows.items():
            if name in ("direction", "description", "explanation"):
                f.create_dataset(f"samples/{name}", data=values, dtype=text)
            elif name in ("mentions", "failed"):
                f[f"samples/{name}"] = np.asarray(values, dtype=np.int8)
            elif name in ("prompt", "slot", "position"):
                f[f"samples/{name}"] = np.asarray(values, dtype=np.int64)
            else:
                f[f"samples/{name}"] = np.asarray(values, dtype=np.float64)
        for name, values in continuations.items():
            if name in ("direction", "text"):
                f.create_dataset(f"continuations/{name}", data=values, dtype=text)
            else:
                f[f"continuations/{name}"] = np.asarray(values, dtype=np.float64 if name == "scale" else np.int64)
        if drop:
            del f[drop]
    summary = os.path.join(run_dir, "summary.csv")
    direction = np.array(rows["direction"])
    scale = np.array(rows["scale"])
    with open(summary, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["direction", "scale", "metric", "mean", "median", "std", "n"])
        for d in ("vector", "random"):
            for s in scales:
                keep = (direction == d) & (scale == s)
                for metric, source in (("cos_v", "cos_v"), ("proj_v", "proj_v"), ("cos_dir", "cos_dir"),
                                       ("act_cos_v", "act_cos_v"), ("act_proj_v", "act_proj_v"), ("kl", "kl"),
                                       ("mention_rate", "mentions"), ("failure_rate", "failed")):
                    values = np.asarray(rows[source], dtype=float)[keep]
                    writer.writerow([d, repr(float(s)), metric, *mean_or_nan(values)])
    return path


if __name__ == "__main__":
    print(make(sys.argv[1]))
