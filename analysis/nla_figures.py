#!/usr/bin/python3
"""Figures of an `nla eval` run (DESIGN section 5), as PNG and PDF, readable in greyscale:

  metric_vs_layer   one panel per metric, a line per condition (av, av_normed, random,
                    shuffled, mean), distinct markers and dash patterns, anchor layer marked
  pca_layers        truth vs reconstruction in the first two principal components, at up to
                    four layers (the anchor and a spread of others)
  clc_heatmap       cross-layer consistency: mean cosine between the same text's
                    reconstructions at layers i and j

    nla_figures.py RUN/results.h5 --out-dir RUN/figures
Reads the results.h5 layout described in analysis/README.md. Run with /usr/bin/python3.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

CONDITION_STYLE = {  # greyscale-safe: grey level, marker and dash pattern all differ
    "av": dict(color="0.0", marker="o", linestyle="-", label="AV (this anchor)"),
    "av_normed": dict(color="0.25", marker="s", linestyle="--", label="AV, norm-rescaled"),
    "shuffled": dict(color="0.45", marker="^", linestyle="-.", label="shuffled descriptions"),
    "random": dict(color="0.6", marker="v", linestyle=":", label="random vector"),
    "mean": dict(color="0.75", marker="D", linestyle=(0, (5, 1)), label="layer mean"),
}
METRIC_LABEL = {"cosine": "cosine", "fve": "FVE", "recall10": "Recall@10", "nrmse": "nRMSE",
                "mse_nrm": "mse_nrm", "fve_nrm": "fve_nrm"}


def save(fig, out_dir, name):
    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(path + ".tmp", format=ext, dpi=130, bbox_inches="tight")
        os.replace(path + ".tmp", path)
        paths.append(path)
    plt.close(fig)
    return paths


def metric_vs_layer(f, out_dir, metrics=("cosine", "fve", "recall10", "nrmse")):
    layers = np.asarray(f.attrs["layers"])
    anchor = int(f.attrs["anchor_layer"])
    metrics = [m for m in metrics if f"metrics/av/{m}" in f]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        lowest = np.inf
        for condition, style in CONDITION_STYLE.items():
            key = f"metrics/{condition}/{metric}"
            if key not in f:
                continue
            values = f[key][:]
            mean = np.nanmean(values, axis=1)
            lowest = min(lowest, np.nanmin(mean)) if np.isfinite(mean).any() else lowest
            ax.plot(layers, mean, markersize=4, linewidth=1.4, **style)
        ax.axvline(anchor, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        title = METRIC_LABEL.get(metric, metric)
        # FVE is unbounded below: reconstructions with norms far from the truth's (an
        # untrained AR) reach -1e5 and would flatten every other curve. Linear in [-1, 1],
        # logarithmic beyond, and the title says so.
        if metric in ("fve", "fve_nrm") and lowest < -1:
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(top=1.5)  # FVE <= 1 by definition
            title += " (symlog below -1)"
        ax.set_title(title)
        ax.grid(True, color="0.9")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Reconstruction by layer, mean over samples (anchor layer {anchor}, dashed line)")
    fig.tight_layout()
    return save(fig, out_dir, "metric_vs_layer")


def pca_layers(f, out_dir, max_panels=4):
    available = sorted(int(name) for name in f["pca"].keys()) if "pca" in f else []
    if not available:
        return []
    anchor = int(f.attrs["anchor_layer"])
    # The anchor plus layers spread from the first to the last.
    picks = [anchor] if anchor in available else []
    others = [l for l in available if l not in picks]
    count = min(max_panels - len(picks), len(others))
    for index in np.linspace(0, len(others) - 1, count).round().astype(int) if count > 0 else []:
        if others[index] not in picks:
            picks.append(others[index])
    picks.sort()
    fig, axes = plt.subplots(1, len(picks), figsize=(3.6 * len(picks), 3.6), squeeze=False)
    for ax, layer in zip(axes[0], picks):
        group = f[f"pca/{layer}"]
        truth, recon = group["truth"][:], group["reconstruction"][:]
        variance = group.attrs.get("explained_variance", [np.nan, np.nan])
        ax.scatter(truth[:, 0], truth[:, 1], s=10, facecolors="none", edgecolors="0.0", linewidths=0.6, label="truth")
        ax.scatter(recon[:, 0], recon[:, 1], s=10, marker="x", color="0.55", linewidths=0.6, label="reconstruction")
        ax.set_title(f"layer {layer}" + (" (anchor)" if layer == anchor else ""))
        ax.set_xlabel(f"PC1 ({100 * variance[0]:.0f}% var)")
        ax.set_ylabel(f"PC2 ({100 * variance[1]:.0f}% var)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Truth vs reconstruction, first two principal components of the truth")
    fig.tight_layout()
    return save(fig, out_dir, "pca_layers")


def clc_heatmap(f, out_dir):
    if "clc" not in f:
        return []
    layers = np.asarray(f.attrs["layers"])
    clc = f["clc"][:]
    fig, ax = plt.subplots(figsize=(5, 4.3))
    image = ax.imshow(clc, cmap="Greys", vmin=min(0.0, np.nanmin(clc)), vmax=1.0, origin="lower")
    ticks = np.linspace(0, len(layers) - 1, min(len(layers), 8)).round().astype(int)
    ax.set_xticks(ticks, layers[ticks])
    ax.set_yticks(ticks, layers[ticks])
    ax.set_xlabel("layer j")
    ax.set_ylabel("layer i")
    ax.set_title("Cross-layer consistency of reconstructions")
    fig.colorbar(image, ax=ax, label="mean cosine")
    return save(fig, out_dir, "clc_heatmap")


def make_all(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with h5py.File(results, "r") as f:
        return metric_vs_layer(f, out_dir) + pca_layers(f, out_dir) + clc_heatmap(f, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if not os.path.exists(args.results):
        print(f"nla_figures: {args.results}: no such file", file=sys.stderr)
        return 2
    for path in make_all(args.results, args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
