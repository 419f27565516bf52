#!/usr/bin/python3
"""Statistics of the evaluation sweep (DESIGN section 5): per layer, a Wilcoxon signed-rank
test of the `av` condition against each baseline, paired by sample, and Benjamini-Hochberg
correction across layers at q = 0.05 (per baseline and metric).

Library use:  table = paired_tests(av, baselines, layers, metric="cosine")
Command:      nla_stats.py results.h5 --out-dir RUN/   (writes stats.csv and stats.md)

The alternative is one-sided in the direction where `av` is better (higher cosine, FVE,
recall; lower nRMSE, mse_nrm); a layer is significant when its BH-adjusted p-value is at
most q. Uses Debian's numpy, scipy and statsmodels: run with /usr/bin/python3.
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

HIGHER_IS_BETTER = {"cosine": True, "fve": True, "recall10": True, "fve_nrm": True, "nrmse": False, "mse_nrm": False}
BASELINES = ("random", "shuffled", "mean")
Q = 0.05


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
    parser.add_argument("--metrics", default="cosine,fve,nrmse,mse_nrm,recall10")
    args = parser.parse_args(argv)
    import h5py  # only the command needs the file format
    with h5py.File(args.results, "r") as f:
        layers = [int(l) for l in f.attrs["layers"]]
        rows = []
        for metric in args.metrics.split(","):
            if f"metrics/av/{metric}" not in f:
                print(f"nla_stats: {args.results}: dataset 'metrics/av/{metric}' is missing", file=sys.stderr)
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
