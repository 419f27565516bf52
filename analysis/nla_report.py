#!/usr/bin/python3
"""One command from an `nla eval` run directory to the page a person opens first:

    nla_report.py RUN/            -> RUN/report/report.md (+ figures/, stats.csv, stats.md)

With RUN/coverage/ from nla_coverage.py (several anchors' runs), the page adds the
coverage map and the chosen anchor set.

It runs the statistics (nla_stats.py) and the figures (nla_figures.py), then writes a
Markdown page: the anchor layer's headline numbers for every condition, the figures, the
per-layer Wilcoxon/Benjamini-Hochberg table for cosine, and the provenance of the run.
Run with /usr/bin/python3 (Debian's numpy/scipy/matplotlib/h5py/statsmodels).
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nla_figures  # noqa: E402
import nla_stats  # noqa: E402

CONDITIONS = ("av", "av_normed", "shuffled", "random", "mean")


def headline(f):
    layers = list(np.asarray(f.attrs["layers"]))
    anchor = int(f.attrs["anchor_layer"])
    row = layers.index(anchor)
    metrics = [m for m in ("cosine", "fve", "recall10", "nrmse") if f"metrics/av/{m}" in f]
    lines = ["| condition | " + " | ".join(nla_figures.METRIC_LABEL[m] for m in metrics) + " |",
             "| --- |" + " ---: |" * len(metrics)]
    for condition in CONDITIONS:
        if f"metrics/{condition}/{metrics[0]}" not in f:
            continue
        cells = [f"{np.nanmean(f[f'metrics/{condition}/{m}'][row]):.3f}" for m in metrics]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return anchor, "\n".join(lines) + "\n"


def build(run_dir):
    results = os.path.join(run_dir, "results.h5")
    if not os.path.exists(results):
        raise FileNotFoundError(f"{results}: no such file (run nla eval first)")
    report_dir = os.path.join(run_dir, "report")
    figures = nla_figures.make_all(results, os.path.join(report_dir, "figures"))
    with h5py.File(results, "r") as f:
        layers = [int(l) for l in f.attrs["layers"]]
        anchor, table = headline(f)
        rows = []
        for metric in ("cosine", "fve", "nrmse", "recall10"):
            if f"metrics/av/{metric}" not in f:
                continue
            baselines = {b: f[f"metrics/{b}/{metric}"][:] for b in nla_stats.BASELINES if f"metrics/{b}/{metric}" in f}
            rows += nla_stats.paired_tests(f[f"metrics/av/{metric}"][:], baselines, layers, metric)
    nla_stats.write_csv(rows, os.path.join(report_dir, "stats.csv"))
    cosine_rows = [r for r in rows if r["metric"] == "cosine"]
    with open(os.path.join(report_dir, "stats.md"), "w") as out:
        out.write(nla_stats.markdown_table(rows))
    significant = {b: sum(r["significant"] for r in cosine_rows if r["baseline"] == b) for b in nla_stats.BASELINES}

    lines = [f"# NLA evaluation: anchor layer {anchor}", "",
             f"Run directory: `{os.path.abspath(run_dir)}`. Layers {layers[0]}-{layers[-1]}.", "",
             f"## Anchor layer {anchor} (means over samples)", "", table,
             "## Where the AV beats each baseline (cosine, Wilcoxon signed-rank, BH q = 0.05)", ""]
    for baseline, count in significant.items():
        lines.append(f"- `av` > `{baseline}`: significant at {count} of {len(layers)} layers")
    lines += ["", "## Figures", ""]
    for path in figures:
        if path.endswith(".png"):
            name = os.path.basename(path)
            lines += [f"![{name}](figures/{name})", ""]
    # Anchor coverage (nla_coverage.py ... --out RUN/coverage), when it was made for this run.
    coverage = os.path.join(run_dir, "coverage", "coverage.json")
    if os.path.exists(os.path.join(run_dir, "coverage", "coverage_map.png")) and os.path.exists(coverage):
        info = json.load(open(coverage))
        chosen = ", ".join(str(c["anchor"]) for c in info["chosen"])
        lines += ["## Anchor coverage", "",
                  f"Smallest set of anchors keeping layers {info['range'][0]}-{info['range'][1]} at "
                  f"{info['metric']} >= {info['min_cosine']:g} ({info['method']} search): {chosen or 'none'}; "
                  f"layers no anchor reaches: {', '.join(map(str, info['uncovered_layers'])) or 'none'}.", "",
                  "![coverage map](../coverage/coverage_map.png)", ""]
    lines += ["## Per-layer tests (cosine)", "", nla_stats.markdown_table(cosine_rows),
              "All metrics: `stats.csv`, `stats.md`.", ""]
    provenance = os.path.join(run_dir, "provenance.json")
    if os.path.exists(provenance):
        info = json.load(open(provenance))
        lines += ["## Provenance", "", f"- nla {info.get('nla_version', '?')}",
                  f"- command: `{info.get('command_line', '?')}`", ""]
    report = os.path.join(report_dir, "report.md")
    with open(report + ".tmp", "w") as out:
        out.write("\n".join(lines))
    os.replace(report + ".tmp", report)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    try:
        print(build(args.run_dir))
    except FileNotFoundError as error:
        print(f"nla_report: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
