#!/usr/bin/python3
"""Which anchors cover which layers: several `nla eval` run directories (one per anchor,
i.e. one AV/AR pair each) -> the best anchor per layer and the smallest set of anchors
that keeps every layer of a range at or above a mean-cosine threshold.

    nla_coverage.py RUN1 RUN2 ... --range 0-27 --min-cosine 0.5 --out DIR [--metric cosine]

Writes DIR/coverage.csv (layer, best run, its anchor layer, its mean), DIR/coverage.json and
DIR/coverage.md (the chosen set, the layers no anchor reaches, the per-anchor means) and
DIR/coverage_map.{png,pdf} (anchor x layer heatmap of the mean, greyscale, chosen anchors
marked). The mean per (run, layer) is the nanmean of /metrics/av/<metric> in results.h5.

Set cover: anchor a covers layer l when its mean >= min-cosine. Layers that no anchor
covers are reported and left out of the cover. With <= 20 anchors the search is exact
(subsets by increasing size; among the smallest, the one with the highest summed best
mean over the range); beyond 20 it is the greedy set cover (most newly covered layers
first, ties by summed mean), which is within a factor ln(layers) + 1 of the optimum.
Put DIR at RUN/coverage of a run and nla_report.py includes the map in that run's report.
"""
import argparse
import csv
import itertools
import json
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

EXACT_LIMIT = 20


def parse_range(text):
    first, _, last = text.partition("-")
    first, last = int(first), int(last or first)
    if last < first:
        raise ValueError(f"--range {text}: expected a-b with a <= b")
    return list(range(first, last + 1))


def read_run(run_dir, metric):
    path = os.path.join(run_dir, "results.h5")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file (expected an nla eval run directory)")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != "nla-eval":
            raise ValueError(f"{path}: attribute 'format': expected \"nla-eval\"")
        key = f"metrics/av/{metric}"
        if key not in f:
            raise ValueError(f"{path}: dataset '{key}' missing")
        layers = [int(l) for l in f.attrs["layers"]]
        means = np.nanmean(f[key][:], axis=1)
        return {"run": run_dir, "anchor": int(f.attrs["anchor_layer"]), "means": dict(zip(layers, means.tolist()))}


def choose_cover(covers, scores, layers):
    """covers[a]: set of layers anchor a covers; scores[a][l]: its mean. Returns (chosen, method)."""
    target = set().union(*covers) & set(layers) if covers else set()
    n = len(covers)

    def value(subset):  # summed best mean over the coverable layers: the tie-break
        return sum(max(scores[a].get(l, -np.inf) for a in subset) for l in sorted(target))

    if not target:
        return [], "exact"
    if n <= EXACT_LIMIT:
        for size in range(1, n + 1):
            feasible = [s for s in itertools.combinations(range(n), size)
                        if set().union(*(covers[a] for a in s)) >= target]
            if feasible:
                return list(max(feasible, key=value)), "exact"
    chosen, left = [], set(target)
    while left:
        a = max((a for a in range(n) if a not in chosen),
                key=lambda a: (len(covers[a] & left), sum(scores[a].get(l, 0) for l in layers)))
        chosen.append(a)
        left -= covers[a]
    return sorted(chosen), "greedy"


def coverage(runs, layers, min_cosine):
    scores = [r["means"] for r in runs]
    covers = [{l for l in layers if l in s and s[l] >= min_cosine} for s in scores]
    chosen, method = choose_cover(covers, scores, layers)
    rows = []
    for l in layers:
        candidates = [(s[l], i) for i, s in enumerate(scores) if l in s and np.isfinite(s[l])]
        best_value, best = max(candidates) if candidates else (float("nan"), None)
        rows.append({"layer": l, "best_run": runs[best]["run"] if best is not None else "",
                     "best_anchor": runs[best]["anchor"] if best is not None else "", "best_mean": best_value})
    uncovered = [l for l in layers if not any(l in c for c in covers)]
    return rows, chosen, method, uncovered


def coverage_map(runs, layers, chosen, min_cosine, out_dir):
    matrix = np.array([[r["means"].get(l, np.nan) for l in layers] for r in runs])
    fig, ax = plt.subplots(figsize=(max(5, 0.3 * len(layers) + 2), max(2.5, 0.45 * len(runs) + 1.5)))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="Greys", vmin=min(0.0, np.nanmin(matrix)), vmax=1.0,
                      aspect="auto", origin="lower")
    ax.set_xticks(range(len(layers)), layers, fontsize=7)
    ax.set_yticks(range(len(runs)), [f"L{r['anchor']}" + (" *" if i in chosen else "") for i, r in enumerate(runs)])
    # Cells below the threshold get a hatch so that the split survives greyscale printing.
    for i in range(len(runs)):
        for j in range(len(layers)):
            if np.isfinite(matrix[i, j]) and matrix[i, j] < min_cosine:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.5", lw=0))
    ax.set_xlabel("evaluated layer")
    ax.set_ylabel("anchor (* = in the chosen set)")
    ax.set_title(f"Mean cosine per anchor and layer (hatched: < {min_cosine:g})")
    fig.colorbar(image, ax=ax, label="mean cosine")
    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(out_dir, f"coverage_map.{ext}")
        fig.savefig(path + ".tmp", format=ext, dpi=130, bbox_inches="tight")
        os.replace(path + ".tmp", path)
        paths.append(path)
    plt.close(fig)
    return paths


def write_outputs(runs, layers, min_cosine, metric, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rows, chosen, method, uncovered = coverage(runs, layers, min_cosine)
    with open(os.path.join(out_dir, "coverage.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["layer", "best_run", "best_anchor", "best_mean"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {"range": [layers[0], layers[-1]], "min_cosine": min_cosine, "metric": metric, "method": method,
               "chosen": [{"run": runs[i]["run"], "anchor": runs[i]["anchor"]} for i in chosen],
               "uncovered_layers": uncovered,
               "means": {runs[i]["run"]: {str(l): runs[i]["means"].get(l) for l in layers} for i in range(len(runs))}}
    with open(os.path.join(out_dir, "coverage.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    lines = [f"# Anchor coverage of layers {layers[0]}-{layers[-1]} ({metric} >= {min_cosine:g})", "",
             f"Smallest set ({method} search): " + ", ".join(f"anchor {runs[i]['anchor']} (`{runs[i]['run']}`)"
                                                             for i in chosen), ""]
    lines.append(f"Layers no anchor reaches: {', '.join(map(str, uncovered)) if uncovered else 'none'}.")
    lines += ["", "| layer | best anchor | mean |", "| ---: | ---: | ---: |"]
    lines += [f"| {r['layer']} | {r['best_anchor']} | {r['best_mean']:.3f} |" for r in rows]
    lines += ["", "![coverage map](coverage_map.png)", ""]
    with open(os.path.join(out_dir, "coverage.md"), "w") as handle:
        handle.write("\n".join(lines))
    coverage_map(runs, layers, chosen, min_cosine, out_dir)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--range", required=True, help="layers a-b")
    parser.add_argument("--min-cosine", type=float, required=True)
    parser.add_argument("--metric", default="cosine")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        layers = parse_range(args.range)
        runs = [read_run(run, args.metric) for run in args.runs]
    except (FileNotFoundError, ValueError) as error:
        print(f"nla_coverage: {error}", file=sys.stderr)
        return 2
    summary = write_outputs(runs, layers, args.min_cosine, args.metric, args.out)
    print(json.dumps({"chosen": summary["chosen"], "method": summary["method"],
                      "uncovered_layers": summary["uncovered_layers"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
