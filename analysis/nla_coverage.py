#!/usr/bin/python3
"""Which anchors cover which layers: several `nla eval` run directories (one per anchor,
i.e. one AV/AR pair each) -> the best anchor per layer and the smallest set of anchors
that keeps every layer of a range at or above a mean-cosine threshold.

    nla_coverage.py RUN1 RUN2 ... --range 0-27 --min-cosine 0.5 --out DIR [--metric cosine]

Writes DIR/coverage.csv (one row per layer of the range or of any run: in_range, the best
anchor and its mean, then one column per run with its mean), DIR/coverage.json (the chosen
set, the layers no anchor reaches, the best achievable minimum, a one-sentence statement, the
means), DIR/coverage.md and DIR/coverage_map.{png,pdf} (anchor x layer heatmap of the mean,
greyscale, hatched below the threshold, chosen anchors marked). The mean per (run, layer) is
the nanmean of /metrics/av/<metric> in results.h5. A run's name in the tables is its
directory's name (the path as given when two runs share a name).

`nla eval --av A,B --ar C,D` (several anchors) writes the same coverage.csv and
coverage.json itself (src/eval/coverage.cpp follows these rules, and
tests/eval/test_sweep.cpp checks that its coverage.csv equals this script's, byte for byte):
- best anchor of a layer: the highest finite mean, ties to the earlier run;
- set cover: anchor a covers layer l when its mean >= min-cosine. Layers that no anchor
  covers are reported and left out of the cover; the statement then says that no set
  reaches the threshold and gives the best achievable minimum (all anchors together).
- With <= 20 anchors the search is exact (subsets by increasing size in
  itertools.combinations order; among the smallest, the first with the highest summed best
  mean over the covered layers); beyond 20 it is the greedy set cover (most newly covered
  layers first, ties by the summed mean over the range), within a factor ln(layers) + 1 of
  the optimum, and the statement says so.
Put DIR at RUN/coverage of a run and nla_report.py includes the map in that run's report;
nla_report.py on a several-anchor run directory makes the map itself.
"""
import argparse
import csv
import itertools
import json
import os
import sys
import warnings

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


def run_names(paths):
    """A run's name in the tables: its directory's name (anchor_20), or the path as given when
    two runs share a name."""
    names = [os.path.basename(os.path.normpath(p)) for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def nanmean_rows(values):
    """np.nanmean per row (the C++ side reproduces numpy's pairwise sum bit for bit)."""
    return np.nanmean(values, axis=1) if values.size else np.full(values.shape[0], np.nan)


def read_run(run_dir, metric, name=None):
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
        with warnings.catch_warnings():  # a layer whose samples are all NaN has mean NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            means = nanmean_rows(f[key][:])
        return {"run": name or run_dir, "path": run_dir, "anchor": int(f.attrs["anchor_layer"]),
                "means": dict(zip(layers, means.tolist()))}


def choose_cover(covers, scores, layers):
    """covers[a]: set of layers anchor a covers; scores[a][l]: its mean. Returns (chosen, method).
    Sums are explicit left-to-right loops (not sum(), which Python 3.12 compensates), so the C++
    side (src/eval/coverage.cpp) gets the same doubles and the same tie-breaks."""
    target = sorted(set().union(*covers) & set(layers)) if covers else []
    n = len(covers)

    def value(subset):  # summed best mean over the coverable layers: the tie-break
        total = 0.0
        for l in target:
            total += max(scores[a].get(l, -np.inf) for a in subset)
        return total

    if not target:
        return [], "exact"
    if n <= EXACT_LIMIT:
        for size in range(1, n + 1):
            feasible = [s for s in itertools.combinations(range(n), size)
                        if set().union(*(covers[a] for a in s)) >= set(target)]
            if feasible:
                return list(max(feasible, key=value)), "exact"

    def range_sum(a):
        total = 0.0
        for l in layers:
            total += scores[a].get(l, 0)
        return total

    chosen, left = [], set(target)
    while left:
        a = max((a for a in range(n) if a not in chosen), key=lambda a: (len(covers[a] & left), range_sum(a)))
        chosen.append(a)
        left -= covers[a]
    return sorted(chosen), "greedy"


def range_text(layers):
    consecutive = layers[-1] - layers[0] + 1 == len(layers)
    return f"{layers[0]}-{layers[-1]}" if consecutive else ", ".join(map(str, layers))


def coverage(runs, layers, min_cosine, metric="cosine"):
    scores = [r["means"] for r in runs]
    covers = [{l for l in layers if l in s and s[l] >= min_cosine} for s in scores]
    chosen, method = choose_cover(covers, scores, layers)
    rows = []
    for l in sorted(set(layers).union(*(s.keys() for s in scores))):
        best = None  # the highest finite mean, ties to the earlier run
        for i, s in enumerate(scores):
            if l in s and np.isfinite(s[l]) and (best is None or s[l] > scores[best][l]):
                best = i
        rows.append({"layer": l, "in_range": int(l in layers), "best_anchor": runs[best]["anchor"] if best is not None else "",
                     "best_mean": scores[best][l] if best is not None else float("nan"),
                     "best_run": runs[best]["run"] if best is not None else "",
                     **{r["run"]: r["means"].get(l, "") for r in runs}})
    uncovered = [l for l in layers if not any(l in c for c in covers)]
    # The best achievable minimum (every anchor together) and the chosen set's minimum.
    best_min, weakest = float("inf"), -1
    chosen_min, chosen_weakest = float("inf"), -1
    for row in rows:
        if not row["in_range"]:
            continue
        value = row["best_mean"]
        if np.isnan(value) and not np.isnan(best_min):
            best_min, weakest = float("nan"), row["layer"]
        elif not np.isnan(best_min) and value < best_min:
            best_min, weakest = value, row["layer"]
        mine = [scores[a][row["layer"]] for a in chosen if row["layer"] in scores[a]]
        chosen_best = -np.inf
        for v in mine:
            if v > chosen_best:
                chosen_best = v
        if chosen_best < chosen_min:
            chosen_min, chosen_weakest = chosen_best, row["layer"]
    if uncovered or not chosen:
        chosen_min = float("nan")
    anchors = ", ".join(str(runs[i]["anchor"]) for i in chosen)
    span = range_text(layers)
    if not uncovered:
        statement = (f"Anchor set {{{anchors}}} keeps every layer of {span} at {metric} >= {min_cosine:g} "
                     f"({method} search; lowest mean {chosen_min:.3f} at layer {chosen_weakest}).")
    else:
        reach = (f"undefined (no anchor was evaluated at layer {weakest})" if np.isnan(best_min)
                 else f"{best_min:.3f} (layer {weakest})")
        statement = (f"No set of anchors keeps every layer of {span} at {metric} >= {min_cosine:g}: layers "
                     f"{', '.join(map(str, uncovered))} stay below it with every anchor; the best achievable "
                     f"minimum is {reach}.")
        if chosen:
            statement += f" Smallest set covering the other layers ({method} search): {{{anchors}}}."
    if method == "greedy":
        statement += f" More than {EXACT_LIMIT} anchors: greedy set cover, which may not be the smallest set."
    return {"rows": rows, "chosen": chosen, "method": method, "uncovered": uncovered, "best_min": best_min,
            "weakest": weakest, "chosen_min": chosen_min, "statement": statement}


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


def finite_or_none(value):
    return value if value is not None and np.isfinite(value) else None


def markdown_table(runs, result):
    """The per-layer table: best anchor, its mean, every anchor's mean (ranges marked)."""
    head = "| layer | in range | best anchor | best mean | " + " | ".join(f"L{r['anchor']}" for r in runs) + " |"
    lines = [head, "| ---: | :---: | ---: | ---: |" + " ---: |" * len(runs)]
    for row in result["rows"]:
        cells = [f"{row[r['run']]:.3f}" if row[r["run"]] != "" else "" for r in runs]
        best = f"{row['best_mean']:.3f}" if np.isfinite(row["best_mean"]) else ""
        lines.append(f"| {row['layer']} | {'yes' if row['in_range'] else ''} | {row['best_anchor']} | {best} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(runs, layers, min_cosine, metric, out_dir, with_map=True):
    """coverage.csv and coverage.json in the format `nla eval` writes for several anchors
    (src/eval/coverage.cpp), plus coverage.md and the map."""
    os.makedirs(out_dir, exist_ok=True)
    result = coverage(runs, layers, min_cosine, metric)
    fields = ["layer", "in_range", "best_anchor", "best_mean", "best_run"] + [r["run"] for r in runs]
    with open(os.path.join(out_dir, "coverage.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(result["rows"])
    chosen = result["chosen"]
    summary = {"metric": metric, "range": [layers[0], layers[-1]], "range_layers": list(layers),
               "min_cosine": min_cosine, "method": result["method"], "exact_limit": EXACT_LIMIT,
               "covered": not result["uncovered"],
               "chosen": [{"run": runs[i]["run"], "anchor": runs[i]["anchor"]} for i in chosen],
               "uncovered_layers": result["uncovered"],
               "best_achievable_minimum": finite_or_none(result["best_min"]), "weakest_layer": result["weakest"],
               "chosen_minimum": finite_or_none(result["chosen_min"]), "statement": result["statement"],
               "runs": [{"run": r["run"], "path": r["path"], "anchor": r["anchor"]} for r in runs],
               "means": {r["run"]: {str(l): finite_or_none(r["means"].get(l)) for l in layers} for r in runs}}
    with open(os.path.join(out_dir, "coverage.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    lines = [f"# Anchor coverage of layers {range_text(layers)} ({metric} >= {min_cosine:g})", "",
             result["statement"], "",
             "Chosen: " + (", ".join(f"anchor {runs[i]['anchor']} (`{runs[i]['path']}`)" for i in chosen) or "none"),
             "", markdown_table(runs, result)]
    if with_map:
        lines += ["![coverage map](coverage_map.png)", ""]
    with open(os.path.join(out_dir, "coverage.md"), "w") as handle:
        handle.write("\n".join(lines))
    if with_map:
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
        runs = [read_run(run, args.metric, name) for run, name in zip(args.runs, run_names(args.runs))]
    except (FileNotFoundError, ValueError) as error:
        print(f"nla_coverage: {error}", file=sys.stderr)
        return 2
    summary = write_outputs(runs, layers, args.min_cosine, args.metric, args.out)
    print(json.dumps({"chosen": summary["chosen"], "method": summary["method"],
                      "uncovered_layers": summary["uncovered_layers"], "statement": summary["statement"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
