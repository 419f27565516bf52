#!/usr/bin/python3
"""Statistics of the evaluation sweep (DESIGN section 5): per layer, a Wilcoxon signed-rank
test of the `av` condition against each baseline, paired by sample, and Benjamini-Hochberg
correction across layers at q = 0.05 (per baseline and metric).

Library use:  table = paired_tests(av, baselines, layers, metric="cosine")
Command:      nla_stats.py results.h5 --out-dir RUN/   (writes stats.csv and stats.md)

The tests pair samples, so they use the per-sample metrics of /metrics (results.h5 version
2): cosine, fve_sample, nrmse, mse_nrm, recall10 by default (fve_nrm too on request). The
headline FVE is a per-layer figure (/layer_metrics/<condition>/fve), not a per-sample one,
and has no paired test. The alternative is one-sided in the direction where `av` is better
(higher cosine, fve_sample, fve_nrm, recall; lower nRMSE, mse_nrm); a layer is significant
when its BH-adjusted p-value is at most q. Uses Debian's numpy, scipy and statsmodels: run
with /usr/bin/python3.
"""
import argparse
import csv
import math
import os
import sys
import warnings

import numpy as np
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

HIGHER_IS_BETTER = {"cosine": True, "fve_sample": True, "fve": True, "recall10": True, "fve_nrm": True,
                    "nrmse": False, "mse_nrm": False}
BASELINES = ("random", "shuffled", "mean")
DEFAULT_METRICS = ("cosine", "fve_sample", "nrmse", "mse_nrm", "recall10")
Q = 0.05
RESULTS_VERSION = 2  # the results.h5 layout these scripts read (analysis/README.md)


class ResultsVersionError(ValueError):
    """A results.h5 of another layout version (older runs of `nla eval`)."""


def version_attr(f):
    """The root `version` attribute of an nla HDF5 file as an int; as stored when it is not a
    number (so the error can show it), None when absent."""
    version = f.attrs.get("version")
    try:
        return int(version)
    except (TypeError, ValueError):
        return version


def require_version(f, path):
    """Raises ResultsVersionError (one line naming the file) unless `f` is results.h5 version 2."""
    version = version_attr(f)
    if version != RESULTS_VERSION:
        found = "no version attribute" if version is None else f"version {version}"
        raise ResultsVersionError(
            f"{path}: results.h5 {found}, these scripts read version {RESULTS_VERSION} (FVE per layer, "
            f"reconstructions in the activation's scale): re-run `nla eval` to regenerate it")


def paired_tests(av, baselines, layers, metric="cosine", q=Q):
    """av: (n_layers, n) array; baselines: {name: (n_layers, n)}; NaN pairs are dropped.
    Returns a list of dict rows, one per (baseline, layer)."""
    greater = HIGHER_IS_BETTER.get(metric, True)
    rows = []
    for name, base in baselines.items():
        p_values, layer_rows = [], []
        for index, layer in enumerate(layers):
            a, b = np.asarray(av[index], dtype=float), np.asarray(base[index], dtype=float)
            keep = np.isfinite(a) & np.isfinite(b)
            a, b = a[keep], b[keep]
            difference = a - b
            row = {"metric": metric, "baseline": name, "layer": int(layer), "n": int(keep.sum()),
                   "median_av": float(np.median(a)) if a.size else math.nan,
                   "median_baseline": float(np.median(b)) if b.size else math.nan,
                   "median_difference": float(np.median(difference)) if a.size else math.nan}
            if a.size == 0 or np.all(difference == 0):
                row["statistic"], p = math.nan, 1.0  # no evidence of any difference
            else:
                with warnings.catch_warnings():
                    # Few nonzero differences (e.g. 0/1 recall): scipy warns that its normal
                    # approximation is rough; the p-value is still the one it computes.
                    warnings.simplefilter("ignore", UserWarning)
                    result = wilcoxon(a, b, alternative="greater" if greater else "less", zero_method="wilcox")
                row["statistic"], p = float(result.statistic), float(result.pvalue)
            row["p_value"] = p
            p_values.append(p)
            layer_rows.append(row)
        reject, adjusted, _, _ = multipletests(p_values, alpha=q, method="fdr_bh")
        for row, r, p_adj in zip(layer_rows, reject, adjusted):
            row["p_adjusted"] = float(p_adj)
            row["significant"] = bool(r)
        rows.extend(layer_rows)
    return rows


COLUMNS = ["metric", "baseline", "layer", "n", "median_av", "median_baseline", "median_difference", "statistic",
           "p_value", "p_adjusted", "significant"]


def write_csv(rows, path):
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def markdown_table(rows):
    lines = ["| metric | baseline | layer | n | median av | median baseline | p (BH) | significant |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in rows:
        lines.append(f"| {r['metric']} | {r['baseline']} | {r['layer']} | {r['n']} | {r['median_av']:.4g} | "
                     f"{r['median_baseline']:.4g} | {r['p_adjusted']:.3g} | {'yes' if r['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.h5 of nla eval")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="per-sample metrics of /metrics (default: %(default)s)")
    args = parser.parse_args(argv)
    import h5py  # only the command needs the file format
    if not os.path.exists(args.results):
        print(f"nla_stats: {args.results}: no such file", file=sys.stderr)
        return 2
    with h5py.File(args.results, "r") as f:
        try:
            require_version(f, args.results)
        except ResultsVersionError as error:
            print(f"nla_stats: {error}", file=sys.stderr)
            return 2
        layers = [int(l) for l in f.attrs["layers"]]
        rows = []
        for metric in args.metrics.split(","):
            if f"metrics/av/{metric}" not in f:
                hint = (" (FVE is a per-layer figure, /layer_metrics; its per-sample form is fve_sample)"
                        if metric == "fve" else "")
                print(f"nla_stats: {args.results}: dataset 'metrics/av/{metric}' is missing{hint}", file=sys.stderr)
                return 2
            av = f[f"metrics/av/{metric}"][:]
            baselines = {b: f[f"metrics/{b}/{metric}"][:] for b in BASELINES if f"metrics/{b}/{metric}" in f}
            rows += paired_tests(av, baselines, layers, metric)
    os.makedirs(args.out_dir, exist_ok=True)
    write_csv(rows, os.path.join(args.out_dir, "stats.csv"))
    with open(os.path.join(args.out_dir, "stats.md"), "w") as f:
        f.write(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
