#!/usr/bin/python3
"""One command from an `nla eval` run directory to the page a person opens first:

    nla_report.py RUN/            -> RUN/report/report.md (+ figures/, stats.csv, stats.md)

With RUN/coverage/ from nla_coverage.py (several anchors' runs), the page adds the
coverage map and the chosen anchor set.

A several-anchor run directory (`nla eval --av A,B --ar C,D`: RUN/anchor_<L>/ runs and
RUN/coverage.{csv,json}) gets one report per anchor (RUN/anchor_<L>/report/report.md) and a
top page RUN/report/report.md: the coverage statement and table, the anchor coverage map
(nla_coverage.py, recomputed from the anchor runs with the run's range and threshold, and
checked against the run's coverage.json), each anchor's headline table and metric-vs-layer
figure, and links to the anchor reports.

With --steer STEER_RUN (an `nla steer-audit` run) the page ends with the steering audit: its
dose-response figure and per-scale table, and nla_steer_report.py's page in report/steer/.

It runs the statistics (nla_stats.py) and the figures (nla_figures.py), then writes a
Markdown page: the anchor layer's headline numbers for every condition (cosine, Recall@10,
nRMSE: means over samples; FVE: the per-layer figure of /layer_metrics, with a line saying
so and which AR target the run had), the figures, the per-layer Wilcoxon/Benjamini-Hochberg
table for cosine, and the provenance of the run. It reads results.h5 version 2; an older
file stops it with one line asking to re-run `nla eval` (exit 2).
Run with /usr/bin/python3 (Debian's numpy/scipy/matplotlib/h5py/statsmodels).
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nla_coverage  # noqa: E402
import nla_figures  # noqa: E402
import nla_stats  # noqa: E402
import nla_steer_report  # noqa: E402

CONDITIONS = ("av", "av_normed", "shuffled", "random", "mean")
HEADLINE_METRICS = ("cosine", "fve", "recall10", "nrmse")
AR_TARGET_TEXT = {
    "normalized": "AR target: normalized, outputs rescaled to each layer's median norm",
    "raw": "AR target: raw, outputs used as they are",
}
# What the `mean` condition predicts (results.h5 attribute mean_condition; absent before 2026-12-06).
MEAN_CONDITION_TEXT = {
    "leave_one_out": "mean: each sample predicted by the mean of the layer's other evaluated samples",
    "": "mean: the mean of the layer's evaluated samples, the sample itself included",
}
STATS_METRICS = ("cosine", "fve_sample", "nrmse", "recall10")


def text_attr(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def definitions_line(f):
    """The one line under the headline table: which definition each column uses."""
    target = text_attr(f.attrs.get("ar_target", "unknown"))
    scale = AR_TARGET_TEXT.get(target, f"AR target: {target}")
    mean = MEAN_CONDITION_TEXT.get(text_attr(f.attrs.get("mean_condition", "")), MEAN_CONDITION_TEXT[""])
    return ("cosine, Recall@10, nRMSE: means over samples; FVE: 1 - sum_d Var_i(x - y) / sum_d Var_i(x) over the "
            f"layer's samples, reconstructions in the activation's scale ({scale}); {mean}.")


def headline(f):
    """The anchor layer's table (one row per condition) and the definitions line under it."""
    layers = list(np.asarray(f.attrs["layers"]))
    anchor = int(f.attrs["anchor_layer"])
    row = layers.index(anchor)
    metrics = [m for m in HEADLINE_METRICS if nla_figures.layer_curve(f, "av", m) is not None]
    lines = ["| condition | " + " | ".join(nla_figures.METRIC_LABEL[m] for m in metrics) + " |",
             "| --- |" + " ---: |" * len(metrics)]
    for condition in CONDITIONS:
        curves = [nla_figures.layer_curve(f, condition, m) for m in metrics]
        if curves[0] is None:
            continue
        cells = ["" if c is None else f"{c[row]:.3f}" for c in curves]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return anchor, "\n".join(lines) + "\n\n" + definitions_line(f) + "\n"


def write_report(lines, run_dir, report_dir):
    """report_dir/report.md from `lines` plus the run's provenance (atomic); returns its path."""
    provenance = os.path.join(run_dir, "provenance.json")
    if os.path.exists(provenance):
        with open(provenance) as handle:
            info = json.load(handle)
        lines = lines + ["## Provenance", "", f"- nla {info.get('nla_version', '?')}",
                         f"- command: `{info.get('command_line', '?')}`", ""]
    report = os.path.join(report_dir, "report.md")
    with open(report + ".tmp", "w") as out:
        out.write("\n".join(lines))
    os.replace(report + ".tmp", report)
    return report


def anchor_runs(run_dir):
    """RUN/anchor_<L> subdirectories with a results.h5, by layer."""
    found = []
    for name in os.listdir(run_dir):
        if name.startswith("anchor_") and name[7:].isdigit() and os.path.exists(os.path.join(run_dir, name, "results.h5")):
            found.append((int(name[7:]), name))
    return [name for _, name in sorted(found)]


def build_several(run_dir):
    """The top page of a several-anchor run (and every anchor's own report)."""
    names = anchor_runs(run_dir)
    with open(os.path.join(run_dir, "coverage.json")) as handle:
        recorded = json.load(handle)
    report_dir = os.path.join(run_dir, "report")
    os.makedirs(report_dir, exist_ok=True)
    anchor_reports = [build(os.path.join(run_dir, name)) for name in names]
    runs = [nla_coverage.read_run(os.path.join(run_dir, name), recorded["metric"], name) for name in names]
    layers = recorded["range_layers"]
    ours = nla_coverage.write_outputs(runs, layers, recorded["min_cosine"], recorded["metric"],
                                      os.path.join(report_dir, "coverage"))
    keys = ("chosen", "method", "uncovered_layers", "best_achievable_minimum", "statement", "means")
    differing = [k for k in keys if ours.get(k) != recorded.get(k)]
    result = nla_coverage.coverage(runs, layers, recorded["min_cosine"], recorded["metric"])
    anchors = [r["anchor"] for r in runs]
    lines = [f"# NLA evaluation: {len(runs)} anchors (layers {', '.join(map(str, anchors))})", "",
             f"Run directory: `{os.path.abspath(run_dir)}`. One complete single-anchor run per anchor in "
             "`anchor_<L>/`; the coverage tables in `coverage.csv` and `coverage.json`.", "",
             "## Anchor coverage", "", recorded["statement"], ""]
    if differing:
        lines += [f"**Warning**: recomputing the coverage from the anchor runs differs from `coverage.json` in: "
                  f"{', '.join(differing)} (the table and map below are the recomputation).", ""]
    else:
        lines += ["(`coverage.json` agrees with nla_coverage.py recomputed from the anchor runs.)", ""]
    lines += [f"Mean {recorded['metric']} of `av` per layer and anchor:", "",
              nla_coverage.markdown_table(runs, result), "![coverage map](coverage/coverage_map.png)", "",
              "## Anchors", ""]
    for name, run, path in zip(names, runs, anchor_reports):
        results_path = os.path.join(run_dir, name, "results.h5")
        with h5py.File(results_path, "r") as f:
            nla_stats.require_version(f, results_path)
            _, table = headline(f)
        lines += [f"### Anchor layer {run['anchor']}", "",
                  f"Report: [{name}/report/report.md](../{name}/report/report.md)", "", table,
                  f"![metric vs layer, anchor {run['anchor']}](../{name}/report/figures/metric_vs_layer.png)", ""]
    return write_report(lines, run_dir, report_dir)


def steer_section(steer_run, report_dir):
    """--steer: the steering audit's report under report/steer/, and a section of this page with
    its dose-response figure and per-scale table."""
    steer_dir = os.path.join(report_dir, "steer")
    page = nla_steer_report.build(steer_run, out_dir=steer_dir)
    audit = nla_steer_report.read_audit(os.path.join(steer_run, "audit.h5") if os.path.isdir(steer_run) else steer_run)
    words = ", ".join(audit["concept_words"]) or "none"
    lines = ["## Steering audit (nla steer-audit)", "",
             f"The AV on activations steered at layer {audit['layer']} (concept words: {words}); the full page: "
             f"[steer/{os.path.basename(page)}](steer/{os.path.basename(page)}).", ""]
    for name in sorted(os.listdir(os.path.join(steer_dir, "figures"))):
        if name.endswith(".png"):
            lines += [f"![{name}](steer/figures/{name})", ""]
    return lines + [nla_steer_report.headline_table(audit), ""]


def build(run_dir, steer=None):
    results = os.path.join(run_dir, "results.h5")
    if not os.path.exists(results) and os.path.exists(os.path.join(run_dir, "coverage.json")) and \
            os.path.isdir(run_dir) and anchor_runs(run_dir):
        return build_several(run_dir)
    if not os.path.exists(results):
        raise FileNotFoundError(f"{results}: no such file (run nla eval first)")
    report_dir = os.path.join(run_dir, "report")
    with h5py.File(results, "r") as f:
        nla_stats.require_version(f, results)  # before any output is made
    figures = nla_figures.make_all(results, os.path.join(report_dir, "figures"))
    with h5py.File(results, "r") as f:
        layers = [int(l) for l in f.attrs["layers"]]
        anchor, table = headline(f)
        rows = []
        for metric in STATS_METRICS:
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
             f"## Anchor layer {anchor}", "", table,
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
    if steer:
        lines += steer_section(steer, report_dir)
    return write_report(lines, run_dir, report_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steer", help="an nla steer-audit run directory: its report goes to report/steer/ and its "
                                        "dose-response figure and table into this page")
    args = parser.parse_args(argv)
    try:
        print(build(args.run_dir, args.steer))
    except (FileNotFoundError, nla_stats.ResultsVersionError, nla_steer_report.AuditFormatError) as error:
        print(f"nla_report: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
