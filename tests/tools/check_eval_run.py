#!/usr/bin/python3
"""Independent checks of an `nla eval` run directory (numpy + h5py), used by tests/eval.

  check_eval_run.py check RUN STORE   layout of results.h5 (version 2)/summary.csv/provenance,
                                      and every metric recomputed in float64 numpy from the
                                      stored (rescaled, float32) reconstructions and the store's
                                      activations (DESIGN section 5): per-sample metrics, the
                                      per-layer FVE, median norms and the reconstructions' scale,
                                      the Recall@10 pool, CLC, PCA and summary.csv; prints JSON
                                      {"cosine": {condition: {layer: mean cosine}}, "failed":
                                      {...}, "fve": {condition: {layer: per-layer FVE}},
                                      "ar_target": "normalized"|"raw"}.
  check_eval_run.py same RUN_A RUN_B  every dataset bit-identical (NaN == NaN), every group's
                                      and dataset's attributes equal, root attributes equal
                                      except created_by.
Exit 1 with one message per problem on stderr.

Tolerances: per-sample metrics 1e-9 absolute (both sides float64 from the same float32
inputs; only summation order differs); per-layer FVE 1e-9 * max(1, |ref|); median norms
1e-9 relative; the norm of every stored reconstruction row (ar_target normalized) 1e-5
relative to median_norm (float32); PCA coordinates 1e-4 relative to the largest (float32
output, SVD from another LAPACK call); explained variance 1e-9."""
import csv
import json
import os
import sys

import h5py
import numpy as np

CONDITIONS = ["av", "random", "shuffled", "mean", "av_normed"]
METRICS = ["cosine", "recall10", "fve_sample", "nrmse", "mse_nrm", "fve_nrm"]  # per sample, /metrics
AR_TARGETS = ("normalized", "raw")
MASK = (1 << 64) - 1
problems = []


def expect(ok, message):
    if not ok:
        problems.append(message)


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


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


def metrics(x, y, mu, var_nrm, candidates, dis):
    """Per-sample metrics; candidates: the unit-normalised pool rows, dis: (n, P-1) indices into them."""
    d = x.shape[1]
    xu, yu = unit(x), unit(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        fve_sample = 1.0 - ((x - y) ** 2).sum(1) / ((x - mu) ** 2).sum(1)
    mse_nrm = (((xu - yu) * np.sqrt(d)) ** 2).mean(1)
    own = np.einsum("ij,ij->i", xu, yu)
    scores = np.einsum("ipd,id->ip", candidates[dis], yu)
    return {"cosine": own, "fve_sample": fve_sample, "nrmse": np.sqrt(((xu - yu) ** 2).mean(1)), "mse_nrm": mse_nrm,
            "fve_nrm": 1.0 - mse_nrm / var_nrm, "recall10": ((scores > own[:, None]).sum(1) < 10).astype(float)}


def layer_fve(x, y):
    """The reproduction's figure: 1 - sum_d Var_i(x_id - y_id) / sum_d Var_i(x_id)."""
    return 1.0 - (x - y).var(axis=0).sum() / x.var(axis=0).sum()


def check(run, store_path):
    for name in ("results.h5", "summary.csv", "config.ini", "provenance.json"):
        expect(os.path.exists(os.path.join(run, name)), f"{run}: {name} missing")
    if problems:
        return {}
    f = h5py.File(os.path.join(run, "results.h5"), "r")
    store = h5py.File(store_path, "r")
    expect(text(f.attrs.get("format")) == "nla-eval", "format attribute")
    expect("nla" in text(f.attrs.get("created_by")), "created_by attribute")
    version = f.attrs.get("version")
    expect(version is not None and int(version) == 2, f"version attribute: {version} (expected 2)")
    ar_target = text(f.attrs.get("ar_target"))
    expect(ar_target in AR_TARGETS, f"ar_target attribute: {ar_target!r} (expected normalized or raw)")
    mean_condition = text(f.attrs.get("mean_condition"))
    expect(mean_condition == "leave_one_out", f"mean_condition attribute: {mean_condition!r} (expected leave_one_out)")
    if problems:
        return {}
    layers = [int(l) for l in f.attrs["layers"]]
    n_layers = len(layers)
    anchor = int(f.attrs["anchor_layer"])
    rows = f["samples/row"][:]
    n = len(rows)
    store_rows = store[f"layers/{layers[0]}/acts"].shape[0]
    expect(np.all(np.diff(rows) > 0), "samples/row not sorted and unique")
    expect(np.array_equal(f["samples/doc"][:], store["samples/doc"][:][rows]), "samples/doc")
    expect(np.array_equal(f["samples/position"][:], store["samples/position"][:][rows]), "samples/position")
    for condition in CONDITIONS:
        expect(f"metrics/{condition}/fve" not in f, f"metrics/{condition}/fve: per-sample fve is fve_sample in version 2")
    # The Recall@10 candidate set: the evaluated rows first, then further store rows when the
    # evaluated samples are fewer than the requested pool.
    requested = int(text(f.attrs["pool"]))
    seed = int(text(f.attrs["seed"]))
    pool_rows = f["pool_rows"][:]
    expect(pool_rows.dtype == np.int64, f"pool_rows dtype {pool_rows.dtype} (expected int64)")
    expect(np.array_equal(pool_rows[:n], rows), "pool_rows: the first n are not samples/row")
    expect(len(np.unique(pool_rows)) == len(pool_rows), "pool_rows: repeated rows")
    expect(np.all((pool_rows >= 0) & (pool_rows < store_rows)), "pool_rows: rows outside the store")
    expected_len = n if n >= requested else min(requested, store_rows)
    expect(len(pool_rows) == expected_len, f"pool_rows: {len(pool_rows)} rows, expected {expected_len} "
           f"({n} samples, pool {requested}, store {store_rows} rows)")
    pool = int(f.attrs["recall_pool"])
    expect(pool == min(requested, len(pool_rows)), f"recall_pool {pool} != min(pool {requested}, {len(pool_rows)})")
    if problems:
        return {}
    dis = distractors(n, len(pool_rows), pool - 1, seed)
    anchor_acts = store[f"layers/{anchor}/acts"][:][rows].astype(np.float64)
    anchor_norm = np.median(np.linalg.norm(anchor_acts, axis=1))
    stored_anchor_norm = float(f.attrs["anchor_median_norm"][0])
    expect(abs(stored_anchor_norm - anchor_norm) < 1e-9 * anchor_norm, "anchor_median_norm")
    median_norm, scale = f["median_norm"][:], f["reconstruction_scale"][:]
    expect(median_norm.shape == (n_layers,) and scale.shape == (n_layers,),
           f"median_norm {median_norm.shape} / reconstruction_scale {scale.shape}: expected ({n_layers},)")
    if ar_target == "normalized":
        expect(np.array_equal(scale, median_norm), "reconstruction_scale != median_norm (ar_target normalized)")
    else:
        expect(np.all(np.isnan(scale)), "reconstruction_scale: expected NaN everywhere (ar_target raw)")
    summary = {c: {} for c in CONDITIONS}
    failed = {}
    figures = {c: {} for c in CONDITIONS}
    recon_av = f["reconstructions/av"][:].astype(np.float64)
    recon_random = f["reconstructions/random"][:].astype(np.float64)
    for name in ("av", "random"):
        expect(f[f"reconstructions/{name}"].dtype == np.float32, f"reconstructions/{name}: expected float32")
    for li, layer in enumerate(layers):
        acts = store[f"layers/{layer}/acts"][:]
        x = acts[rows].astype(np.float64)
        candidates = unit(acts[pool_rows].astype(np.float64))
        mu = x.mean(0)
        # the mean condition: each row predicted by the mean of the other rows
        loo_means = (x.sum(0) - x) / (n - 1) if n > 1 else np.broadcast_to(mu, x.shape)
        m_l = np.median(np.linalg.norm(x, axis=1))
        expect(abs(median_norm[li] - m_l) <= 1e-9 * m_l, f"median_norm layer {layer}: {median_norm[li]} vs {m_l}")
        y_av, y_random = recon_av[li], recon_random[li]
        if ar_target == "normalized":
            for name, y in (("av", y_av), ("random", y_random)):
                err = np.abs(np.linalg.norm(y, axis=1) / median_norm[li] - 1).max() if n else 0
                expect(err <= 1e-5, f"reconstructions/{name} layer {layer}: row norms differ from median_norm "
                       f"by {err:.3g} (relative)")
        var_nrm = f["var_nrm"][li]
        if text(f.attrs["var_nrm_source"]) == "layer":
            expect(abs(var_nrm - (unit(x) * np.sqrt(x.shape[1])).var(axis=0).mean()) < 1e-9, f"var_nrm layer {layer}")
        pi = f["shuffled/permutation"][li]
        expect(sorted(pi) == list(range(n)) and not np.any(pi == np.arange(n)), f"layer {layer}: pi not a derangement")
        xn = x * (stored_anchor_norm / np.linalg.norm(x, axis=1, keepdims=True))
        y_normed = unit(y_av) * stored_anchor_norm if ar_target == "normalized" else y_av
        cases = {"av": (x, mu, y_av), "random": (x, mu, y_random),
                 "shuffled": (x, mu, y_av[pi]), "mean": (x, mu, loo_means),
                 "av_normed": (xn, xn.mean(0), y_normed)}
        for condition, (truth, mean, prediction) in cases.items():
            ref = metrics(truth, prediction, mean, var_nrm, candidates, dis)
            for metric in METRICS:
                got = f[f"metrics/{condition}/{metric}"][li]
                err = np.nanmax(np.abs(got - ref[metric])) if n else 0
                expect(err < 1e-9, f"layer {layer} {condition} {metric}: max abs error {err:.3g}")
            figure = layer_fve(truth, prediction)
            got = f[f"layer_metrics/{condition}/fve"][li]
            expect(abs(got - figure) <= 1e-9 * max(1.0, abs(figure)),
                   f"layer {layer} {condition} layer fve: {got!r} vs numpy {figure!r}")
            figures[condition][layer] = float(got) if np.isfinite(got) else None  # JSON has no NaN
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
            pca_scale = np.abs(truth_2d).max()
            expect(np.abs(f[f"pca/{layer}/truth"][:] - truth_2d).max() < 1e-4 * pca_scale, f"pca/{layer}/truth")
            expect(np.abs(f[f"pca/{layer}/reconstruction"][:] - (y_av - mu) @ comps.T).max() < 1e-4 * pca_scale,
                   f"pca/{layer}/reconstruction")
            ev = (s ** 2 / (s ** 2).sum())[:2]
            expect(np.abs(f[f"pca/{layer}"].attrs["explained_variance"] - ev).max() < 1e-9, f"pca/{layer} variance")
    for condition in CONDITIONS:
        expect(f[f"layer_metrics/{condition}/fve"].shape == (n_layers,), f"layer_metrics/{condition}/fve shape")
    unit_r = recon_av / np.maximum(np.linalg.norm(recon_av, axis=2, keepdims=True), 1e-300)
    clc = np.einsum("isd,jsd->ij", unit_r, unit_r) / n
    expect(np.abs(f["clc"][:] - clc).max() < 1e-9, "clc")
    with open(os.path.join(run, "summary.csv")) as handle:
        records = list(csv.DictReader(handle))
    per_layer = len(CONDITIONS) * (len(METRICS) + 1) + 2  # + the per-layer fve row; + failed of av and random
    expect(len(records) == n_layers * per_layer, f"summary.csv: {len(records)} rows, expected {n_layers * per_layer}")
    keys = [(int(r["layer"]), r["condition"], r["metric"]) for r in records]
    wanted = {(l, c, m) for l in layers for c in CONDITIONS for m in METRICS + ["fve"]}
    wanted |= {(l, c, "failed") for l in layers for c in ("av", "random")}
    expect(len(set(keys)) == len(keys) and set(keys) == wanted,
           f"summary.csv: rows (layer, condition, metric) differ from the expected set: {sorted(set(keys) ^ wanted)[:5]}")
    for r in records:
        if r["metric"] == "failed" or int(r["layer"]) not in layers or r["condition"] not in CONDITIONS:
            continue
        li = layers.index(int(r["layer"]))
        where = f"summary.csv {r['layer']} {r['condition']} {r['metric']}"
        if r["metric"] == "fve":
            ref = f[f"layer_metrics/{r['condition']}/fve"][li]
            for key in ("mean", "median"):
                expect(abs(float(r[key]) - ref) <= 1e-8 * max(1.0, abs(ref)), f"{where} {key}: {r[key]} vs {ref}")
            expect(np.isnan(float(r["std"])), f"{where} std: {r['std']} (expected nan)")
            expect(int(r["n"]) == n, f"{where} n: {r['n']} (expected {n})")
            continue
        if r["metric"] not in METRICS:
            continue
        values = f[f"metrics/{r['condition']}/{r['metric']}"][li]
        values = values[~np.isnan(values)]
        expect(int(r["n"]) == len(values), f"{where} n: {r['n']} (expected {len(values)})")
        for key, ref in (("mean", values.mean()), ("median", np.median(values)), ("std", values.std())):
            expect(abs(float(r[key]) - ref) <= 1e-8 * max(1.0, abs(ref)), f"{where} {key}: {r[key]} vs {ref}")
    return {"cosine": summary, "failed": failed, "fve": figures, "ar_target": ar_target}


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
