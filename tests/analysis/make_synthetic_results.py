#!/usr/bin/python3
"""Writes a synthetic results.h5 (+ summary.csv) in the layout of analysis/README.md (version
2), with a known structure: `av` is good near the anchor layer and decays away from it,
`random` and `mean` are flat and poor, `shuffled` in between. The per-layer FVE
(/layer_metrics/<condition>/fve, `layer_fve` below) is deliberately not the mean of the
per-sample fve_sample, so a test can tell which one a script shows; the `mean` condition's is
exactly 0. version=1 writes the older layout (per-sample `fve`, no /layer_metrics) that the
scripts refuse. For the analysis tests only."""
import csv
import os
import sys

import h5py
import numpy as np

CONDITIONS = ("av", "av_normed", "shuffled", "random", "mean")
PER_SAMPLE = ("cosine", "recall10", "fve_sample", "nrmse", "mse_nrm", "fve_nrm")


def layer_fve(n_layers=8, anchor=4):
    """The per-layer FVE figure per condition (what the report's FVE column must show)."""
    layers = np.arange(n_layers)
    closeness = np.exp(-np.abs(layers - anchor) / 3.0)
    return {"av": 0.05 + 0.5 * closeness, "av_normed": 0.04 + 0.45 * closeness,
            "shuffled": np.full(n_layers, -0.35), "random": np.full(n_layers, -1.25), "mean": np.zeros(n_layers)}


def make(path, n_layers=8, n=120, anchor=4, seed=0, version=2, ar_target="normalized", clc=None):
    rng = np.random.default_rng(seed)
    layers = np.arange(n_layers)
    closeness = np.exp(-np.abs(layers - anchor) / 3.0)[:, None]
    cosines = {
        "av": 0.3 + 0.6 * closeness + rng.normal(0, 0.05, (n_layers, n)),
        "av_normed": 0.3 + 0.55 * closeness + rng.normal(0, 0.05, (n_layers, n)),
        "shuffled": 0.35 + rng.normal(0, 0.05, (n_layers, n)),
        "random": 0.1 + rng.normal(0, 0.05, (n_layers, n)),
        "mean": 0.3 + rng.normal(0, 0.02, (n_layers, n)),
    }
    figures = layer_fve(n_layers, anchor)
    metrics = {}
    for condition, cosine in cosines.items():
        mse_nrm = np.clip(2 * (1 - cosine), 0, None)
        metrics[condition] = {
            "cosine": cosine,
            "fve_sample": 2 * cosine - 1,
            "nrmse": np.sqrt(mse_nrm / 64),
            "mse_nrm": mse_nrm,
            "fve_nrm": 1 - mse_nrm,
            "recall10": (cosine + rng.normal(0, 0.1, cosine.shape) > 0.6).astype(float),
        }
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "nla-eval"
        f.attrs["version"] = version
        f.attrs["layers"] = layers
        f.attrs["anchor_layer"] = anchor
        f.attrs["created_by"] = "make_synthetic_results.py"
        if version >= 2:
            f.attrs["ar_target"] = ar_target
            f.attrs["mean_condition"] = "leave_one_out"
        for condition, values in metrics.items():
            for metric, value in values.items():
                name = "fve" if metric == "fve_sample" and version < 2 else metric
                f[f"metrics/{condition}/{name}"] = value
            if version >= 2:
                f[f"layer_metrics/{condition}/fve"] = figures[condition]
        if version >= 2:
            median_norm = 10.0 + layers.astype(float)
            f["median_norm"] = median_norm
            f["reconstruction_scale"] = median_norm if ar_target == "normalized" else np.full(n_layers, np.nan)
            f["pool_rows"] = np.arange(n, dtype=np.int64)
        f["clc"] = np.exp(-np.abs(layers[:, None] - layers[None, :]) / 4.0) if clc is None else clc
        for layer in layers:
            truth = rng.normal(0, 1, (n, 2)) * [3, 1]
            g = f.create_group(f"pca/{layer}")
            g["truth"] = truth.astype(np.float32)
            g["reconstruction"] = (truth * closeness[layer, 0] + rng.normal(0, 0.5, (n, 2))).astype(np.float32)
            g.attrs["explained_variance"] = [0.6, 0.2]
    summary = os.path.join(os.path.dirname(os.path.abspath(path)), "summary.csv")
    with open(summary, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["layer", "condition", "metric", "mean", "median", "std", "n"])
        for layer in layers:
            for condition in CONDITIONS:
                for metric in PER_SAMPLE:
                    v = metrics[condition][metric][layer]
                    writer.writerow([layer, condition, metric, v.mean(), np.median(v), v.std(), len(v)])
                if version >= 2:
                    value = figures[condition][layer]
                    writer.writerow([layer, condition, "fve", value, value, "nan", n])
            for condition in ("av", "random"):
                writer.writerow([layer, condition, "failed", 0.0, 0.0, 0.0, n])


if __name__ == "__main__":
    make(sys.argv[1])
