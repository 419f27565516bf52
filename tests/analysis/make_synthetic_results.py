#!/usr/bin/python3
"""Writes a synthetic results.h5 (+ summary.csv) in the layout of analysis/README.md, with a
known structure: `av` is good near the anchor layer and decays away from it, `random` and
`mean` are flat and poor, `shuffled` in between. For the analysis tests only."""
import csv
import sys

import h5py
import numpy as np


def make(path, n_layers=8, n=120, anchor=4, seed=0):
    rng = np.random.default_rng(seed)
    layers = np.arange(n_layers)
    closeness = np.exp(-np.abs(layers - anchor) / 3.0)[:, None]
    metrics = {
        "av": 0.3 + 0.6 * closeness + rng.normal(0, 0.05, (n_layers, n)),
        "av_normed": 0.3 + 0.55 * closeness + rng.normal(0, 0.05, (n_layers, n)),
        "shuffled": 0.35 + rng.normal(0, 0.05, (n_layers, n)),
        "random": 0.1 + rng.normal(0, 0.05, (n_layers, n)),
        "mean": 0.3 + rng.normal(0, 0.02, (n_layers, n)),
    }
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "nla-eval"
        f.attrs["layers"] = layers
        f.attrs["anchor_layer"] = anchor
        f.attrs["created_by"] = "make_synthetic_results.py"
        for condition, cosine in metrics.items():
            f[f"metrics/{condition}/cosine"] = cosine
            f[f"metrics/{condition}/fve"] = 2 * cosine - 1
            f[f"metrics/{condition}/nrmse"] = np.sqrt(np.clip(2 * (1 - cosine), 0, None) / 64)
            f[f"metrics/{condition}/recall10"] = (cosine + rng.normal(0, 0.1, cosine.shape) > 0.6).astype(float)
        clc = np.exp(-np.abs(layers[:, None] - layers[None, :]) / 4.0)
        f["clc"] = clc
        for layer in layers:
            truth = rng.normal(0, 1, (n, 2)) * [3, 1]
            g = f.create_group(f"pca/{layer}")
            g["truth"] = truth.astype(np.float32)
            g["reconstruction"] = (truth * closeness[layer, 0] + rng.normal(0, 0.5, (n, 2))).astype(np.float32)
            g.attrs["explained_variance"] = [0.6, 0.2]
    summary = path.rsplit("/", 1)[0] + "/summary.csv"
    with open(summary, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["layer", "condition", "metric", "mean", "median", "std", "n"])
        for condition, cosine in metrics.items():
            for layer in layers:
                v = cosine[layer]
                writer.writerow([layer, condition, "cosine", v.mean(), np.median(v), v.std(), len(v)])


if __name__ == "__main__":
    make(sys.argv[1])
