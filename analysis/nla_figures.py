#!/usr/bin/python3
"""Figures of an `nla eval` run (DESIGN section 5), as PNG and PDF, readable in greyscale:

  metric_vs_layer   one panel per metric, a line per condition (av, av_normed, random,
                    shuffled, mean), distinct markers and dash patterns, anchor layer marked;
                    cosine, Recall@10, nRMSE are means over samples, FVE the per-layer figure
                    (/layer_metrics/<condition>/fve)
  pca_layers        truth vs reconstruction (in the activation's scale) in the first two
                    principal components, at up to four layers (the anchor and a spread of others)
  clc_heatmap       cross-layer consistency: mean cosine between the same text's
                    reconstructions at layers i and j; colour range from the data, every cell's
                    value printed in it up to 30 layers

    nla_figures.py RUN/results.h5 --out-dir RUN/figures
Reads the results.h5 layout (version 2) described in analysis/README.md. Run with /usr/bin/python3.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nla_stats  # noqa: E402

CONDITION_STYLE = {  # greyscale-safe: grey level, marker and dash pattern all differ
    "av": dict(color="0.0", marker="o", linestyle="-", label="AV (this anchor)"),
    "av_normed": dict(color="0.25", marker="s", linestyle="--", label="AV, norm-rescaled"),
    "shuffled": dict(color="0.45", marker="^", linestyle="-.", label="shuffled descriptions"),
    "random": dict(color="0.6", marker="v", linestyle=":", label="random vector"),
    "mean": dict(color="0.75", marker="D", linestyle=(0, (5, 1)), label="layer mean"),
}
METRIC_LABEL = {"cosine": "cosine", "fve": "FVE", "recall10": "Recall@10", "nrmse": "nRMSE",
                "mse_nrm": "mse_nrm", "fve_nrm": "fve_nrm", "fve_sample": "FVE per sample"}
CLC_ANNOTATE_MAX = 30  # layers up to which the CLC heatmap prints every cell's value


def layer_curve(f, condition, metric):
    """The curve of one condition over the layers: FVE is the per-layer figure of
    /layer_metrics, every other metric the mean over samples of /metrics (None if absent)."""
    if metric == "fve":
        key = f"layer_metrics/{condition}/fve"
        return f[key][:].astype(float) if key in f else None
    key = f"metrics/{condition}/{metric}"
    if key not in f:
        return None
    values = f[key][:]
    with np.errstate(all="ignore"):
        return np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values])


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
    metrics = [m for m in metrics if layer_curve(f, "av", m) is not None]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        lowest = np.inf
        for condition, style in CONDITION_STYLE.items():
            mean = layer_curve(f, condition, metric)
            if mean is None:
                continue
            lowest = min(lowest, np.nanmin(mean)) if np.isfinite(mean).any() else lowest
            ax.plot(layers, mean, markersize=4, linewidth=1.4, **style)
        ax.axvline(anchor, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        title = METRIC_LABEL.get(metric, metric) + (" per layer" if metric == "fve" else "")
        # FVE is unbounded below: reconstructions with norms far from the truth's (an
        # untrained AR) reach -1e5 and would flatten every other curve. Linear in [-1, 1],
        # logarithmic beyond, and the title says so.
        if metric in ("fve", "fve_sample", "fve_nrm") and lowest < -1:
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(top=1.5)  # FVE <= 1 by definition
            title += " (symlog below -1)"
        ax.set_title(title)
        ax.grid(True, color="0.9")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Reconstruction by layer in the activation's scale: FVE over each layer's samples, other "
                 f"metrics means over samples (anchor layer {anchor}, dashed line)", fontsize=10)
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
    fig.suptitle("Truth vs reconstruction (reconstructions in the activation's scale),\n"
                 "first two principal components of the truth", fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, "pca_layers")


def clc_colour_range(clc):
    """vmin, vmax of the CLC heatmap: the data's own range (a tiny margin when it is flat)."""
    finite = clc[np.isfinite(clc)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low <= 0:
        margin = 1e-6 * max(1.0, abs(low))
        low, high = low - margin, high + margin
    return low, high


def draw_clc(ax, layers, clc):
    """The CLC matrix on `ax` (greyscale, colour range from the data); with at most
    CLC_ANNOTATE_MAX layers every finite cell's value is printed in it (2 decimals, black on
    light cells, white on dark ones). Returns (image, the text artists of the cells)."""
    vmin, vmax = clc_colour_range(clc)
    cmap = plt.get_cmap("Greys")
    image = ax.imshow(np.ma.masked_invalid(clc), cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
    texts = []
    size = len(layers)
    if size <= CLC_ANNOTATE_MAX:
        fontsize = max(4.5, min(9.0, 110.0 / max(size, 1)))
        for i in range(size):
            for j in range(size):
                value = clc[i, j]
                if not np.isfinite(value):
                    continue
                level = (value - vmin) / (vmax - vmin)
                # Greys: the cell darkens with the value; the text takes the opposite end.
                r, g, b, _ = cmap(float(np.clip(level, 0.0, 1.0)))
                luminance = 0.299 * r + 0.587 * g + 0.114 * b
                texts.append(ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=fontsize,
                                     color="white" if luminance < 0.5 else "black"))
    ticks = np.arange(size) if size <= CLC_ANNOTATE_MAX else \
        np.linspace(0, size - 1, min(size, 8)).round().astype(int)
    ax.set_xticks(ticks, layers[ticks], fontsize=7 if size > 12 else None)
    ax.set_yticks(ticks, layers[ticks], fontsize=7 if size > 12 else None)
    ax.set_xlabel("layer j")
    ax.set_ylabel("layer i")
    return image, texts


def clc_heatmap(f, out_dir):
    if "clc" not in f:
        return []
    layers = np.asarray(f.attrs["layers"])
    clc = f["clc"][:]
    side = max(5.0, 0.36 * len(layers) + 1.5) if len(layers) <= CLC_ANNOTATE_MAX else 5.0
    fig, ax = plt.subplots(figsize=(side, side * 0.86))
    image, _ = draw_clc(ax, layers, clc)
    ax.set_title("Cross-layer consistency of reconstructions")
    fig.colorbar(image, ax=ax, label="mean cosine")
    return save(fig, out_dir, "clc_heatmap")


def make_all(results, out_dir):
    with h5py.File(results, "r") as f:
        nla_stats.require_version(f, results)
        os.makedirs(out_dir, exist_ok=True)
        return metric_vs_layer(f, out_dir) + pca_layers(f, out_dir) + clc_heatmap(f, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if not os.path.exists(args.results):
        print(f"nla_figures: {args.results}: no such file", file=sys.stderr)
        return 2
    try:
        paths = make_all(args.results, args.out_dir)
    except nla_stats.ResultsVersionError as error:
        print(f"nla_figures: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
