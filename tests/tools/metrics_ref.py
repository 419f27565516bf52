#!/usr/bin/python3
"""Independent numpy implementation of the evaluation metrics (DESIGN section 5), the
reference of tests/eval. Reads JSON {truth, ar_output, target, mean, pool, distractors, k} and
prints JSON {prediction, median_norm, cosine, fve_sample, nrmse, mse_nrm, recall, layer_fve,
var_nrm, var_raw, raw_loss}.

The prediction is the AR output in the activation's scale: target "normalized" maps each row
to y / |y| * (the median norm of the truth rows), "raw" keeps it. layer_fve is the published
reproduction's 1 - sum_d Var_i(x - y) / sum_d Var_i(x); raw_loss the raw AR's objective
mean_d (y - x)^2 / var_raw per row, var_raw the truth's mean per-dimension variance.

A zero vector normalises to zero (cosine 0); recall counts candidates with a STRICTLY
higher cosine to the prediction than the truth has (ties count for the truth)."""
import json
import sys

import numpy as np


def unit(rows):
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def main():
    data = json.load(open(sys.argv[1]))
    x = np.array(data["truth"], dtype=np.float64)
    ar_output = np.array(data["ar_output"], dtype=np.float64)
    median_norm = float(np.median(np.linalg.norm(x, axis=1)))
    y = unit(ar_output) * median_norm if data["target"] == "normalized" else ar_output
    mu = np.array(data["mean"], dtype=np.float64)
    pool = np.array(data["pool"], dtype=np.float64)
    distractors = np.array(data["distractors"], dtype=np.int64)
    k = int(data["k"])
    n, d = x.shape
    xu, yu = unit(x), unit(y)
    cosine = np.einsum("ij,ij->i", xu, yu)
    with np.errstate(divide="ignore", invalid="ignore"):
        fve_sample = 1.0 - ((x - y) ** 2).sum(1) / ((x - mu) ** 2).sum(1)
    nrmse = np.sqrt(((xu - yu) ** 2).mean(1))
    mse_nrm = (((xu - yu) * np.sqrt(d)) ** 2).mean(1)
    pool_unit = unit(pool)
    recall = []
    for i in range(n):
        own = float(xu[i] @ yu[i])
        scores = pool_unit[distractors[i]] @ yu[i]
        recall.append(1.0 if int((scores > own).sum()) < k else 0.0)
    layer_fve = 1.0 - (x - y).var(axis=0).sum() / x.var(axis=0).sum()
    scaled = unit(x) * np.sqrt(d)
    var_nrm = scaled.var(axis=0).mean()
    var_raw = x.var(axis=0).mean()
    raw_loss = ((ar_output - x) ** 2).mean(1) / var_raw
    clean = lambda a: [None if not np.isfinite(v) else float(v) for v in a]
    print(json.dumps({"prediction": [clean(row) for row in y], "median_norm": median_norm, "cosine": clean(cosine),
                      "fve_sample": clean(fve_sample), "nrmse": clean(nrmse), "mse_nrm": clean(mse_nrm),
                      "recall": recall, "layer_fve": float(layer_fve), "var_nrm": float(var_nrm),
                      "var_raw": float(var_raw), "raw_loss": clean(raw_loss)}))


if __name__ == "__main__":
    main()
