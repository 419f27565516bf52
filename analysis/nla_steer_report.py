#!/usr/bin/python3
"""The report of an `nla steer-audit` run: does the AV's description of a steered activation
follow the steering, and how far does it move compared with the activation itself?

    nla_steer_report.py RUN/ [--out DIR] [--examples N]
        -> DIR/steer_report.md, DIR/figures/dose_response.{png,pdf}, DIR/stats.csv
           (DIR defaults to RUN/report; RUN may also be the audit.h5 itself)

`nla steer-audit` adds scale x (the layer's median activation norm) along a steering vector v
(direction "vector") or along a seeded random direction of the same norm (direction
"random") to the residual stream at one layer while the model continues each prompt,
verbalizes the steered activations at sampled positions with the AV and rebuilds them with
the AR. Scale 0 (unsteered) is stored under both directions. This script reads RUN/audit.h5
(format "nla-steer-audit", version 1; layout in analysis/README.md) and writes:

  dose_response   over the scale, one line per direction with 95% intervals and a dashed line
                  at the unsteered value: mean cos(reconstruction, v); concept-mention rate
                  (Wilson interval); mean KL(steered || unsteered next-token distribution);
                  mean cos(steered activation, v), the truth the description should follow.
                  Means and intervals over samples (mean +- 1.96 SE).
  stats.csv       per direction, scale > 0 and metric (cos_v, proj_v, mentions, kl): Wilcoxon
                  signed-rank (two-sided, scipy's defaults: zero differences dropped) of the
                  scale against scale 0, paired by prompt (each prompt's mean over its slots,
                  failed answers' NaN dropped first; prompts without a value on either side
                  dropped); Benjamini-Hochberg over every test of the report, significant when
                  q < 0.05. No differences at all (e.g. KL at scale 0 against itself): p = 1.
                  Without concept words the mention tests are left out (nothing to test).
  steer_report.md what was steered, the figure, a headline table per scale (vector vs random),
                  the test table, examples (continuations and explanations of the first
                  prompts under the vector) and the provenance.

A missing file, another format or version, or a missing dataset stops it with one line
naming the file and what was expected (exit 2), before any output is written.
Run with /usr/bin/python3 (Debian's numpy/scipy/matplotlib/h5py/statsmodels).
"""
import argparse
import csv
import json
import math
import os
import sys
import warnings

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import wilcoxon  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nla_figures  # noqa: E402
import nla_stats  # noqa: E402

FORMAT = "nla-steer-audit"
VERSION = 1
DIRECTIONS = ("vector", "random")
SAMPLE_FLOATS = ("scale", "cos_v", "proj_v", "cos_dir", "act_cos_v", "act_proj_v", "kl")
SAMPLE_INTS = ("prompt", "slot", "position", "mentions", "failed")
SAMPLE_TEXTS = ("direction", "description", "explanation")
CONTINUATION_FIELDS = ("direction", "scale", "prompt", "text", "tokens")
REQUIRED_ATTRS = ("layer", "median_norm", "vector_norm")
TEST_METRICS = ("cos_v", "proj_v", "mentions", "kl")
Q = nla_stats.Q
Z = 1.959963984540054  # two-sided 95% normal quantile
DIRECTION_STYLE = {  # greyscale-safe: grey level, marker and dash pattern differ
    "vector": dict(color="0.0", marker="o", linestyle="-", label="steering vector"),
    "random": dict(color="0.55", marker="v", linestyle=":", label="random direction, same norm"),
}
METRIC_LABEL = {"cos_v": "cos(reconstruction, v)", "proj_v": "reconstruction on v/|v|",
                "mentions": "concept mention", "kl": "KL(steered || unsteered), nats",
                "act_cos_v": "cos(steered activation, v)"}
STATS_COLUMNS = ["direction", "metric", "scale", "n", "median_scale0", "median_scaled", "median_difference",
                 "statistic", "p_value", "q_value", "significant"]
EXAMPLE_CHARS = 120


class AuditFormatError(ValueError):
    """audit.h5 is missing, not of the format this script reads, or lacks a dataset."""


def text_attr(value):
    """A string attribute as str (h5py gives bytes for fixed-length strings, an array for a
    one-element string array)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_texts(dataset):
    return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in dataset[()]],
                    dtype=object)


def read_audit(path):
    """audit.h5 as a dict of plain arrays (samples, continuations) and attributes; raises
    AuditFormatError (one line naming the file) on anything this script cannot read."""
    if not os.path.exists(path):
        raise AuditFormatError(f"{path}: no such file (expected the audit.h5 of `nla steer-audit`)")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise AuditFormatError(f"{path}: not an HDF5 file (expected format '{FORMAT}' version {VERSION})") from None
    with f:
        found = f.attrs.get("format")
        if found is None or text_attr(found) != FORMAT:
            what = "no format attribute" if found is None else f"format '{text_attr(found)}'"
            raise AuditFormatError(f"{path}: {what}, expected format '{FORMAT}' (the audit.h5 of `nla steer-audit`)")
        version = nla_stats.version_attr(f)
        if version != VERSION:
            what = "no version attribute" if version is None else f"version {version}"
            raise AuditFormatError(f"{path}: {FORMAT} {what}, this script reads version {VERSION}")
        for name in REQUIRED_ATTRS:
            if name not in f.attrs:
                raise AuditFormatError(f"{path}: root attribute '{name}' is missing (expected by {FORMAT} "
                                       f"version {VERSION})")
        wanted = ["scales", "prompts"] + [f"samples/{n}" for n in SAMPLE_TEXTS + SAMPLE_FLOATS + SAMPLE_INTS] + \
                 [f"continuations/{n}" for n in CONTINUATION_FIELDS]
        for name in wanted:
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise AuditFormatError(f"{path}: dataset '/{name}' is missing (expected by {FORMAT} version {VERSION})")
        audit = {"path": path, "layer": int(f.attrs["layer"]), "median_norm": float(f.attrs["median_norm"]),
                 "vector_norm": float(f.attrs["vector_norm"]),
                 "seed": int(f.attrs["seed"]) if "seed" in f.attrs else None}
        for name in ("model", "av", "ar", "vector"):
            audit[name] = text_attr(f.attrs[name]) if name in f.attrs else None
        try:
            words = json.loads(text_attr(f.attrs.get("concept_words", "[]")) or "[]")
        except json.JSONDecodeError:
            raise AuditFormatError(f"{path}: root attribute 'concept_words' is not a JSON list") from None
        if not isinstance(words, list):
            raise AuditFormatError(f"{path}: root attribute 'concept_words' is not a JSON list")
        audit["concept_words"] = [str(w) for w in words]
        provenance = text_attr(f.attrs.get("provenance", "{}"))
        try:
            audit["provenance"] = json.loads(provenance)
        except json.JSONDecodeError:
            audit["provenance"] = provenance  # shown as it is
        audit["scales"] = f["scales"][()].astype(float).reshape(-1)
        audit["prompts"] = read_texts(f["prompts"])
        samples = {n: read_texts(f[f"samples/{n}"]) for n in SAMPLE_TEXTS}
        samples.update({n: f[f"samples/{n}"][()].astype(float).reshape(-1) for n in SAMPLE_FLOATS})
        samples.update({n: f[f"samples/{n}"][()].astype(np.int64).reshape(-1) for n in SAMPLE_INTS})
        continuations = {n: read_texts(f[f"continuations/{n}"]) for n in ("direction", "text")}
        continuations["scale"] = f["continuations/scale"][()].astype(float).reshape(-1)
        continuations["prompt"] = f["continuations/prompt"][()].astype(np.int64).reshape(-1)
        continuations["tokens"] = f["continuations/tokens"][()].astype(np.int64).reshape(-1)
    for group, table in (("samples", samples), ("continuations", continuations)):
        lengths = {name: len(values) for name, values in table.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name} {length}" for name, length in lengths.items())
            raise AuditFormatError(f"{path}: the datasets of '/{group}' differ in length ({detail}), expected one "
                                   "row each")
    scales = audit["scales"]
    if scales.size == 0 or scales[0] != 0.0 or np.any(np.diff(scales) <= 0):
        raise AuditFormatError(f"{path}: '/scales' is {scales.tolist()}, expected ascending scales starting at 0")
    n_prompts = len(audit["prompts"])
    for group, table in (("samples", samples), ("continuations", continuations)):
        bad = sorted(set(table["direction"].tolist()) - set(DIRECTIONS))
        if bad:
            raise AuditFormatError(f"{path}: '/{group}/direction' holds {bad}, expected 'vector' or 'random'")
        if table["prompt"].size and (table["prompt"].min() < 0 or table["prompt"].max() >= n_prompts):
            raise AuditFormatError(f"{path}: '/{group}/prompt' indexes outside the {n_prompts} prompts of '/prompts'")
        # Each row's scale as an index into /scales (the same doubles; a tolerance for text round trips).
        index = np.searchsorted(scales, table["scale"]).clip(0, scales.size - 1)
        below = (index - 1).clip(0, None)
        closer = np.where(np.abs(scales[below] - table["scale"]) < np.abs(scales[index] - table["scale"]), below, index)
        if table["scale"].size and not np.allclose(scales[closer], table["scale"], rtol=1e-9, atol=1e-12):
            raise AuditFormatError(f"{path}: '/{group}/scale' holds scales that are not in '/scales'")
        table["scale_index"] = closer
    audit["samples"], audit["continuations"] = samples, continuations
    return audit


def per_prompt_means(audit, direction, scale_index, metric):
    """(P,) each prompt's mean of `metric` over its slots at one direction and scale (NaN
    values, i.e. failed answers' reconstructions, dropped first); NaN for a prompt without any."""
    s = audit["samples"]
    keep = (s["direction"] == direction) & (s["scale_index"] == scale_index)
    prompts, values = s["prompt"][keep], s[metric][keep].astype(float)
    finite = np.isfinite(values)
    n_prompts = len(audit["prompts"])
    sums = np.bincount(prompts[finite], weights=values[finite], minlength=n_prompts)
    counts = np.bincount(prompts[finite], minlength=n_prompts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def paired_wilcoxon(scaled, baseline):
    """Two-sided Wilcoxon signed-rank of `scaled` against `baseline` (equal-length arrays,
    pairs with a NaN on either side dropped): dict n, medians, statistic, p_value. No
    pairs, or every difference zero: statistic NaN, p = 1 (no evidence of any difference)."""
    a, b = np.asarray(scaled, dtype=float), np.asarray(baseline, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    difference = a - b
    row = {"n": int(a.size),
           "median_scale0": float(np.median(b)) if a.size else math.nan,
           "median_scaled": float(np.median(a)) if a.size else math.nan,
           "median_difference": float(np.median(difference)) if a.size else math.nan}
    if a.size == 0 or np.all(difference == 0):
        row["statistic"], row["p_value"] = math.nan, 1.0
    else:
        with warnings.catch_warnings():
            # Zero differences or few pairs: scipy warns that it switches to its normal
            # approximation; the p-value is still the one it computes.
            warnings.simplefilter("ignore", UserWarning)
            result = wilcoxon(a, b)
        row["statistic"], row["p_value"] = float(result.statistic), float(result.pvalue)
    return row


def dose_tests(audit):
    """Every test of the report (direction x scale > 0 x metric) with BH q-values over all of them."""
    metrics = [m for m in TEST_METRICS if m != "mentions" or audit["concept_words"]]
    rows = []
    for direction in DIRECTIONS:
        for metric in metrics:
            baseline = per_prompt_means(audit, direction, 0, metric)
            for index in range(1, len(audit["scales"])):
                row = {"direction": direction, "metric": metric, "scale": float(audit["scales"][index])}
                row.update(paired_wilcoxon(per_prompt_means(audit, direction, index, metric), baseline))
                rows.append(row)
    if rows:
        _, adjusted, _, _ = multipletests([r["p_value"] for r in rows], alpha=Q, method="fdr_bh")
        for row, q in zip(rows, adjusted):
            row["q_value"] = float(q)
            row["significant"] = bool(q < Q)
    return rows


def write_stats(rows, path):
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STATS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def condition_summary(audit, direction, scale_index, metric):
    """Mean, 95% interval and n over the samples of one direction and scale (NaN skipped). The
    mention rate's interval is Wilson's; the others mean +- 1.96 SE."""
    s = audit["samples"]
    keep = (s["direction"] == direction) & (s["scale_index"] == scale_index)
    values = s[metric][keep].astype(float)
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if metric in ("mentions", "failed"):
        centre = (mean + Z * Z / (2 * n)) / (1 + Z * Z / n)
        half = Z / (1 + Z * Z / n) * math.sqrt(mean * (1 - mean) / n + Z * Z / (4 * n * n))
        return mean, centre - half, centre + half, n
    se = float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return mean, mean - Z * se, mean + Z * se, n


def curve(audit, direction, metric):
    """(mean, low, high) arrays over /scales."""
    points = [condition_summary(audit, direction, i, metric) for i in range(len(audit["scales"]))]
    return tuple(np.array([p[k] for p in points]) for k in range(3))


def dose_response(audit, out_dir):
    """The dose-response figure (PNG and PDF); returns the paths."""
    scales = audit["scales"]
    panels = ["cos_v", "mentions", "kl", "act_cos_v"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.7), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        ax.set_xlabel("scale (x median norm)")
        ax.set_ylabel(METRIC_LABEL[metric] + (" rate" if metric == "mentions" else ""))
        ax.grid(True, color="0.9")
        if metric == "mentions" and not audit["concept_words"]:
            ax.set_title("concept-mention rate")
            ax.text(0.5, 0.5, "no concept words given", ha="center", va="center", transform=ax.transAxes,
                    fontsize=10, color="0.3")
            ax.set_xlim(scales[0], scales[-1] if scales[-1] > scales[0] else 1.0)
            continue
        for direction, style in DIRECTION_STYLE.items():
            mean, low, high = curve(audit, direction, metric)
            ax.errorbar(scales, mean, yerr=np.vstack([mean - low, high - mean]), markersize=4, linewidth=1.4,
                        capsize=3, elinewidth=0.9, **style)
        unsteered = condition_summary(audit, "vector", 0, metric)[0]
        if np.isfinite(unsteered):
            ax.axhline(unsteered, color="0.4", linewidth=0.8, linestyle="--", label="unsteered (scale 0)")
        ax.set_title({"cos_v": "description follows v?", "mentions": "concept-mention rate",
                      "kl": "effect on the model's output", "act_cos_v": "steered activation (truth)"}[metric])
        if len(scales) <= 10:
            ax.set_xticks(scales)
            ax.set_xticklabels([f"{s:g}" for s in scales], fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Steering at layer {audit['layer']}: means over samples with 95% intervals (mean +- 1.96 SE; "
                 "mention rate: Wilson)", fontsize=10)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    return nla_figures.save(fig, out_dir, "dose_response")


def fmt(value, digits=3):
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def headline_table(audit):
    """One row per scale: vector vs random cos_v, mention rate, KL, failure rate, sample counts."""
    have_words = bool(audit["concept_words"])
    lines = ["| scale | cos_v vector | cos_v random | mention rate vector | mention rate random | KL vector | "
             "KL random | failure rate vector | failure rate random | samples vector | samples random |",
             "| ---: |" + " ---: |" * 10]
    s = audit["samples"]
    for index, scale in enumerate(audit["scales"]):
        cells = [f"{scale:g}"]
        for metric in ("cos_v", "mentions", "kl", "failed"):
            for direction in DIRECTIONS:
                mean = condition_summary(audit, direction, index, metric)[0]
                cells.append("n/a" if metric == "mentions" and not have_words else fmt(mean))
        for direction in DIRECTIONS:
            cells.append(str(int(np.sum((s["direction"] == direction) & (s["scale_index"] == index)))))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stats_table(rows):
    lines = ["| direction | metric | scale | n prompts | median at 0 | median at scale | median difference | p "
             "| q (BH) | significant |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in rows:
        lines.append(f"| {r['direction']} | {r['metric']} | {r['scale']:g} | {r['n']} | {r['median_scale0']:.4g} | "
                     f"{r['median_scaled']:.4g} | {r['median_difference']:.4g} | {r['p_value']:.3g} | "
                     f"{r['q_value']:.3g} | {'yes' if r['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def cell_text(text, limit=EXAMPLE_CHARS):
    """`text` as one Markdown table cell: truncated to `limit` characters (an ellipsis marks it),
    newlines shown as a return symbol, Markdown and HTML punctuation backslash-escaped."""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").strip()
    if len(text) > limit:
        text = text[:limit].rstrip() + "…"
    text = text.replace("\n", " ⏎ ")
    return "".join("\\" + c if c in "\\`*_[]<>|#" else c for c in text)


def examples_table(audit, count):
    """For the first `count` prompts and every scale of the vector direction: the continuation
    and the explanation of that prompt's first sampled position."""
    s, c = audit["samples"], audit["continuations"]
    lines = ["| prompt | scale | continuation | explanation (first sampled position) |", "| ---: | ---: | --- | --- |"]
    for prompt in range(min(count, len(audit["prompts"]))):
        for index, scale in enumerate(audit["scales"]):
            found = np.flatnonzero((c["direction"] == "vector") & (c["scale_index"] == index) & (c["prompt"] == prompt))
            continuation = cell_text(c["text"][found[0]]) if found.size else "(none)"
            rows = np.flatnonzero((s["direction"] == "vector") & (s["scale_index"] == index) & (s["prompt"] == prompt))
            if rows.size:
                first = rows[np.lexsort((s["position"][rows], s["slot"][rows]))[0]]
                explanation = cell_text(s["explanation"][first], 160)
                if s["failed"][first]:
                    explanation = "(failed answer) " + explanation
            else:
                explanation = "(no sample)"
            lines.append(f"| {prompt} | {scale:g} | {continuation} | {explanation} |")
    return "\n".join(lines) + "\n"


def scale0_mismatch(audit):
    """Metrics whose scale-0 rows differ between the two directions (they should be identical)."""
    differing = []
    for metric in ("cos_v", "act_cos_v", "kl", "mentions"):
        a, b = (per_prompt_means(audit, d, 0, metric) for d in DIRECTIONS)
        if not np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True):
            differing.append(metric)
    return differing


def summary_mismatch(audit, run_dir):
    """(direction, scale, metric) of RUN/summary.csv whose mean differs from this script's mean
    over samples (None when there is no summary.csv)."""
    path = os.path.join(run_dir, "summary.csv")
    if not os.path.exists(path):
        return None
    ours = {"mention_rate": "mentions", "failure_rate": "failed"}
    differing = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                metric = ours.get(row["metric"], row["metric"])
                scale, mean = float(row["scale"]), float(row["mean"])
            except (KeyError, ValueError):
                return [("summary.csv", "unreadable", "")]
            if metric not in audit["samples"] or row["direction"] not in DIRECTIONS:
                continue
            index = int(np.argmin(np.abs(audit["scales"] - scale)))
            expected = condition_summary(audit, row["direction"], index, metric)[0]
            if not (np.isclose(mean, expected, rtol=1e-4, atol=1e-6) or (math.isnan(mean) and math.isnan(expected))):
                differing.append((row["direction"], f"{scale:g}", row["metric"]))
    return differing


def build(run, out_dir=None, examples=3):
    """Writes the report; returns the path of steer_report.md. Raises AuditFormatError before
    writing anything when audit.h5 cannot be read."""
    path = run if os.path.isfile(run) else os.path.join(run, "audit.h5")
    run_dir = os.path.dirname(os.path.abspath(path))
    audit = read_audit(path)
    out_dir = out_dir or os.path.join(run_dir, "report")
    figures = dose_response(audit, os.path.join(out_dir, "figures"))
    rows = dose_tests(audit)
    write_stats(rows, os.path.join(out_dir, "stats.csv"))

    s = audit["samples"]
    scales = audit["scales"]
    counts = [int(np.sum((s["direction"] == d) & (s["scale_index"] == i))) for d in DIRECTIONS
              for i in range(len(scales))]
    per_condition = f"{counts[0]}" if len(set(counts)) == 1 else f"{min(counts)}-{max(counts)}"
    slots = int(s["slot"].max()) + 1 if s["slot"].size else 0
    words = audit["concept_words"]
    ratio = audit["vector_norm"] / audit["median_norm"] if audit["median_norm"] else math.nan
    lines = [f"# NLA steering audit: layer {audit['layer']}", "",
             f"Run: `{run_dir}`. The steering vector `{audit['vector'] or '?'}` (|v| = {audit['vector_norm']:.4g}, "
             f"{ratio:.3g} x the layer's median activation norm {audit['median_norm']:.4g}) was added to the residual "
             f"stream at layer {audit['layer']} at scales {', '.join(f'{x:g}' for x in scales)} (units of the median "
             f"norm), and, as a control, a random direction of the same norm (seed {audit['seed']}); scale 0 is the "
             f"unsteered model. {len(audit['prompts'])} prompts, up to {slots} sampled positions each: "
             f"{per_condition} verbalized activations per direction and scale. Concept words: "
             f"{', '.join(f'`{w}`' for w in words) if words else 'none given (no mention rate)'}.", ""]
    differing = scale0_mismatch(audit)
    if differing:
        lines += [f"**Warning**: the scale-0 rows differ between the two directions in {', '.join(differing)} (they "
                  "should be the same unsteered rows).", ""]
    mismatch = summary_mismatch(audit, run_dir)
    if mismatch:
        shown = "; ".join(" ".join(m) for m in mismatch[:5]) + (" ..." if len(mismatch) > 5 else "")
        lines += [f"**Warning**: `summary.csv` disagrees with the samples of audit.h5 in {len(mismatch)} means "
                  f"({shown}); the tables below are computed from audit.h5.", ""]
    lines += ["## Dose response", ""]
    for figure in figures:
        if figure.endswith(".png"):
            lines += [f"![dose response](figures/{os.path.basename(figure)})", ""]
    lines += ["Means over samples, 95% intervals (mean +- 1.96 SE over samples, which treats a prompt's sampled "
              "positions as independent; mention rate: Wilson). Dashed: the unsteered value. cos_v is the AR's "
              "reconstruction from the description; cos(steered activation, v) is the activation it describes.", "",
              "## Per scale", "", headline_table(audit),
              "Means over samples (failed answers' NaN left out of cos_v); KL is KL(steered || unsteered) of the "
              "next-token distribution in nats.", "",
              "## Against the unsteered model", "",
              "Wilcoxon signed-rank, two-sided, of each scale against scale 0 of the same direction, paired by prompt "
              "(each prompt's mean over its sampled positions; failed answers dropped first); Benjamini-Hochberg over "
              f"all {len(rows)} tests, significant when q < {Q:g}." +
              ("" if words else " No concept words: no mention tests."), "",
              stats_table(rows) if rows else "(no scale above 0: no tests)\n", "All numbers: `stats.csv`.", ""]
    if examples > 0:
        lines += ["## Examples (steering vector)", "", examples_table(audit, examples)]
    provenance = audit["provenance"]
    text = json.dumps(provenance, indent=2, sort_keys=True, ensure_ascii=False) if not isinstance(provenance, str) \
        else provenance
    lines += ["## Provenance", ""]
    for name in ("model", "av", "ar", "vector"):
        if audit[name] is not None:
            lines.append(f"- {name}: `{audit[name]}`")
    fence = "```"
    while fence in text:
        fence += "`"
    lines += ["", fence + "json", text, fence, ""]
    report = os.path.join(out_dir, "steer_report.md")
    with open(report + ".tmp", "w") as out:
        out.write("\n".join(lines))
    os.replace(report + ".tmp", report)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory of nla steer-audit (or its audit.h5)")
    parser.add_argument("--out", help="output directory (default: RUN/report)")
    parser.add_argument("--examples", type=int, default=3, help="prompts in the examples table (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        print(build(args.run, args.out, args.examples))
    except AuditFormatError as error:
        print(f"nla_steer_report: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
