#!/usr/bin/python3
"""Independent checks of an `nla eval` run directory (numpy + h5py), used by tests/eval.

  check_eval_run.py check RUN STORE   layout of results.h5/summary.csv/provenance, and every
                                      metric recomputed in float64 numpy from the stored
                                      reconstructions and the store's activations (DESIGN
                                      section 5), CLC, PCA and summary.csv; prints JSON
                                      {condition: {layer: mean cosine}} and failed fractions.
  check_eval_run.py same RUN_A RUN_B  every dataset bit-identical (NaN == NaN), every group's
                                      and dataset's attributes equal, root attributes equal
                                      except created_by.
Exit 1 with one message per problem on stderr.

Tolerances: metrics 1e-9 absolute (both sides float64 from the same float32 inputs; only
summation order differs); PCA coordinates 1e-4 relative to the largest (float32 output,
SVD from another LAPACK call); explained variance 1e-9."""
import csv
import json
import os
import sys

import h5py
import numpy as np

CONDITIONS = ["av", "random", "shuffled", "mean", "av_normed"]
METRICS = ["cosine", "recall10", "fve", "nrmse", "mse_nrm", "fve_nrm"]
MASK = (1 << 64) - 1
problems = []


def expect(ok, message):
    if not ok:
        problems.append(message)


def unit(rows):
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def distractors(n, pool, per_sample, seed):
    """nla::eval::draw_distractors: distinct indices != i from splitmix64 seeded (seed, i)."""
    out = np.zeros((n, per_sample), dtype=np.int64)
    for i in range(n):
        state = ((seed * 0x9E3779B97F4A7C15) & MASK) ^ i
        chosen = []
        while len(chosen) < per_sample:
            state, z = splitmix(state)
            c = z % pool
            if c != i and c not in chosen:
                chosen.append(c)
        out[i] = chosen
    return out


def metrics(x, y, mu, var_nrm, dis):
    d = x.shape[1]
    xu, yu = unit(x), unit(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        fve = 1.0 - ((x - y) ** 2).sum(1) / ((x - mu) ** 2).sum(1)
    mse_nrm = (((xu - yu) * np.sqrt(d)) ** 2).mean(1)
    own = np.einsum("ij,ij->i", xu, yu)
    scores = np.einsum("ipd,id->ip", xu[dis], yu)
    return {"cosine": own, "fve": fve, "nrmse": np.sqrt(((xu - yu) ** 2).mean(1)), "mse_nrm": mse_nrm,
            "fve_nrm": 1.0 - mse_nrm / var_nrm, "recall10": ((scores > own[:, None]).sum(1) < 10).astype(float)}


def check(run, store_path):
    for name in ("results.h5", "summary.csv", "config.ini", "provenance.json"):
        expect(os.path.exists(os.path.join(run, name)), f"{run}: {name} missing")
    if problems:
        return {}
    f = h5py.File(os.path.join(run, "results.h5"), "r")
    store = h5py.File(store_path, "r")
    expect(f.attrs["format"] == "nla-eval", "format attribute")
    expect("nla" in f.attrs["created_by"], "created_by attribute")
    layers = [int(l) for l in f.attrs["layers"]]
    anchor = int(f.attrs["anchor_layer"])
    rows = f["samples/row"][:]
    n = len(rows)
    expect(np.all(np.diff(rows) > 0), "samples/row not sorted and unique")
    expect(np.array_equal(f["samples/doc"][:], store["samples/doc"][:][rows]), "samples/doc")
    expect(np.array_equal(f["samples/position"][:], store["samples/position"][:][rows]), "samples/position")
    pool = int(f.attrs["recall_pool"])
    seed = int(f.attrs["seed"])
    dis = distractors(n, n, pool - 1, seed)
    anchor_acts = store[f"layers/{anchor}/acts"][:][rows].astype(np.float64)
    median_norm = np.median(np.linalg.norm(anchor_acts, axis=1))
    expect(abs(f.attrs["anchor_median_norm"][0] - median_norm) < 1e-9 * median_norm, "anchor_median_norm")
    summary = {c: {} for c in CONDITIONS}
    failed = {}
    recon_av = f["reconstructions/av"][:].astype(np.float64)
    for li, layer in enumerate(layers):
        x = store[f"layers/{layer}/acts"][:][rows].astype(np.float64)
        mu = x.mean(0)
        var_nrm = f["var_nrm"][li]
        if f.attrs["var_nrm_source"] == "layer":
            expect(abs(var_nrm - (unit(x) * np.sqrt(x.shape[1])).var(axis=0).mean()) < 1e-9, f"var_nrm layer {layer}")
        pi = f["shuffled/permutation"][li]
        expect(sorted(pi) == list(range(n)) and not np.any(pi == np.arange(n)), f"layer {layer}: pi not a derangement")
        xn = x * (median_norm / np.linalg.norm(x, axis=1, keepdims=True))
        y_av = recon_av[li]
        cases = {"av": (x, mu, y_av), "random": (x, mu, f["reconstructions/random"][li].astype(np.float64)),
                 "shuffled": (x, mu, y_av[pi]), "mean": (x, mu, np.broadcast_to(mu, x.shape)),
                 "av_normed": (xn, xn.mean(0), y_av)}
        for condition, (truth, mean, prediction) in cases.items():
            ref = metrics(truth, prediction, mean, var_nrm, dis)
            for metric in METRICS:
                got = f[f"metrics/{condition}/{metric}"][li]
                err = np.nanmax(np.abs(got - ref[metric])) if n else 0
                expect(err < 1e-9, f"layer {layer} {condition} {metric}: max abs error {err:.3g}")
            summary[condition][layer] = float(f[f"metrics/{condition}/cosine"][li].mean())
        for condition in ("av", "random"):
            texts = f[f"descriptions/{condition}/{layer}"]
            expect(texts.shape == (n,) and h5py.check_string_dtype(texts.dtype) is not None,
                   f"descriptions/{condition}/{layer}: expected vlen strings [{n}]")
            failed.setdefault(condition, {})[layer] = float(f[f"failed/{condition}"][li].mean())
        if f"pca/{layer}" in f:
            centered = x - mu
            _, s, vt = np.linalg.svd(centered, full_matrices=False)
            comps = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]
            truth_2d = centered @ comps.T
            scale = np.abs(truth_2d).max()
            expect(np.abs(f[f"pca/{layer}/truth"][:] - truth_2d).max() < 1e-4 * scale, f"pca/{layer}/truth")
            expect(np.abs(f[f"pca/{layer}/reconstruction"][:] - (y_av - mu) @ comps.T).max() < 1e-4 * scale,
                   f"pca/{layer}/reconstruction")
            ev = (s ** 2 / (s ** 2).sum())[:2]
            expect(np.abs(f[f"pca/{layer}"].attrs["explained_variance"] - ev).max() < 1e-9, f"pca/{layer} variance")
    unit_r = recon_av / np.maximum(np.linalg.norm(recon_av, axis=2, keepdims=True), 1e-300)
    clc = np.einsum("isd,jsd->ij", unit_r, unit_r) / n
    expect(np.abs(f["clc"][:] - clc).max() < 1e-9, "clc")
    with open(os.path.join(run, "summary.csv")) as handle:
        records = list(csv.DictReader(handle))
    expect(len(records) == len(layers) * (len(CONDITIONS) * len(METRICS) + 2), f"summary.csv: {len(records)} rows")
    for r in records:
        if r["metric"] == "failed":
            continue
        li = layers.index(int(r["layer"]))
        values = f[f"metrics/{r['condition']}/{r['metric']}"][li]
        values = values[~np.isnan(values)]
        for key, ref in (("mean", values.mean()), ("median", np.median(values)), ("std", values.std())):
            expect(abs(float(r[key]) - ref) <= 1e-8 * max(1.0, abs(ref)), f"summary.csv {r['layer']} {r['condition']} "
                   f"{r['metric']} {key}: {r[key]} vs {ref}")
    return {"cosine": summary, "failed": failed}


def same(a, b):
    fa, fb = h5py.File(os.path.join(a, "results.h5"), "r"), h5py.File(os.path.join(b, "results.h5"), "r")
    names_a, names_b = [], []
    fa.visit(names_a.append)
    fb.visit(names_b.append)
    expect(sorted(names_a) == sorted(names_b), f"different objects: {set(names_a) ^ set(names_b)}")
    for name in names_a:
        if isinstance(fa[name], h5py.Dataset) and name in fb:
            va, vb = fa[name][()], fb[name][()]
            if va.dtype.kind in "fc":
                expect(np.array_equal(va, vb, equal_nan=True), f"{name} differs")
            else:
                expect(np.array_equal(va, vb), f"{name} differs")
        if name in fb:  # attributes of groups and datasets (e.g. pca/<layer> explained_variance)
            attrs_a, attrs_b = dict(fa[name].attrs), dict(fb[name].attrs)
            expect(sorted(attrs_a) == sorted(attrs_b), f"{name}: different attributes")
            for key, value in attrs_a.items():
                expect(np.array_equal(np.asarray(value), np.asarray(attrs_b.get(key))), f"{name}: attribute {key} differs")
    for key in fa.attrs:
        if key != "created_by":
            expect(np.array_equal(np.asarray(fa.attrs[key]), np.asarray(fb.attrs.get(key))), f"attribute {key} differs")
    return {"objects": len(names_a)}


if __name__ == "__main__":
    mode = sys.argv[1]
    out = check(sys.argv[2], sys.argv[3]) if mode == "check" else same(sys.argv[2], sys.argv[3])
    for p in problems:
        print(p, file=sys.stderr)
    print(json.dumps(out))
    sys.exit(1 if problems else 0)
