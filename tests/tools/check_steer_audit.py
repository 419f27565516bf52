#!/usr/bin/python3
"""Reads `nla steer-audit` outputs with h5py (an independent reader).

    check_steer_audit.py RUN              the layout, and what steering must do to the numbers
    check_steer_audit.py RUN_A RUN_B      the two runs hold the same data (NaN = NaN), e.g. one
                                          and two ranks; attributes other than provenance too

Checks of one run: format/version; every /samples and /continuations column one length;
scales ascending from 0; scale 0 rows under both directions, identical but for cos_dir; KL
exactly 0 at scale 0 and > 0 at the largest scale; the steered activation's cosine with v
rises with the vector's scale (the hook acts at the captured layer) above 0.9 at the largest
scale, while the random direction's stays below 0.5; failed rows have NaN reconstructions;
summary.csv's means equal the columns'. Prints what it measured; exits 1 on a failure.
"""
import csv
import json
import os
import sys

import h5py
import numpy as np

FAILED = []


def expect(ok, message):
    if not ok:
        FAILED.append(message)


def columns(f, group):
    out = {}
    for name, dataset in f[group].items():
        out[name] = dataset.asstr()[:] if dataset.dtype.kind == "O" else dataset[:]
    return out


def check(run):
    with h5py.File(os.path.join(run, "audit.h5"), "r") as f:
        expect(f.attrs["format"] == "nla-steer-audit" and int(f.attrs["version"]) == 1, "format/version")
        for key in ("layer", "median_norm", "vector_norm", "concept_words", "provenance", "seed"):
            expect(key in f.attrs, f"attribute {key}")
        json.loads(f.attrs["provenance"])
        scales = f["scales"][:]
        s = columns(f, "samples")
        c = columns(f, "continuations")
        n_prompts = f["prompts"].shape[0]
    expect(scales[0] == 0 and np.all(np.diff(scales) > 0), f"scales {scales}")
    expect(len({len(v) for v in s.values()}) == 1, "samples columns of one length")
    expect(len({len(v) for v in c.values()}) == 1, "continuations columns of one length")
    expect(len(c["text"]) == 2 * len(scales) * n_prompts, "one continuation per direction, scale and prompt")
    direction, scale = s["direction"], s["scale"]
    zero_v, zero_r = (direction == "vector") & (scale == 0), (direction == "random") & (scale == 0)
    expect(zero_v.sum() == zero_r.sum() > 0, "scale 0 under both directions")
    for name in ("cos_v", "proj_v", "act_cos_v", "act_proj_v", "kl", "mentions", "failed", "prompt", "slot", "position"):
        expect(np.array_equal(s[name][zero_v], s[name][zero_r], equal_nan=True), f"scale 0 {name} the same")
    expect(np.all(s["kl"][scale == 0] == 0), "KL 0 at scale 0")
    top = scales[-1]
    for d in ("vector", "random"):
        expect(np.all(s["kl"][(direction == d) & (scale == top)] > 0), f"{d}: KL > 0 at scale {top}")
    act = {d: [s["act_cos_v"][(direction == d) & (scale == x)].mean() for x in scales] for d in ("vector", "random")}
    print("act_cos_v by scale:", {d: [round(v, 4) for v in values] for d, values in act.items()})
    expect(all(b > a for a, b in zip(act["vector"], act["vector"][1:])), "act_cos_v rises with the vector's scale")
    expect(act["vector"][-1] > 0.9, "act_cos_v > 0.9 at the largest scale")
    expect(abs(act["random"][-1]) < 0.5, "random direction: act_cos_v stays small")
    failed = s["failed"] == 1
    expect(np.all(np.isnan(s["cos_v"][failed])) and np.all(~np.isnan(s["cos_v"][~failed])), "NaN exactly when failed")
    expect(np.all(s["mentions"][failed] == 0), "a failed answer mentions nothing")
    with open(os.path.join(run, "summary.csv")) as handle:
        for row in csv.DictReader(handle):
            if row["metric"] != "kl":
                continue
            mine = (direction == row["direction"]) & (scale == float(row["scale"]))
            expect(abs(float(row["mean"]) - s["kl"][mine].mean()) <= 1e-9 * max(1, abs(s["kl"][mine].mean())),
                   f"summary.csv kl mean {row}")
    print(f"samples {len(direction)}, failed {int(failed.sum())}")


def compare(a, b):
    with h5py.File(os.path.join(a, "audit.h5"), "r") as fa, h5py.File(os.path.join(b, "audit.h5"), "r") as fb:
        names = []
        fa.visit(names.append)
        for name in names:
            if not isinstance(fa[name], h5py.Dataset):
                continue
            x, y = fa[name], fb[name]
            if x.dtype.kind == "O":
                expect(list(x.asstr()[:]) == list(y.asstr()[:]), f"{name} differs")
            else:
                expect(np.array_equal(x[:], y[:], equal_nan=x.dtype.kind == "f"), f"{name} differs")
        for key in fa.attrs:
            if key != "provenance":
                expect(str(fa.attrs[key]) == str(fb.attrs[key]), f"attribute {key} differs")
        print(f"compared {len(names)} objects")


def main():
    if len(sys.argv) == 2:
        check(sys.argv[1])
    else:
        compare(sys.argv[1], sys.argv[2])
    for message in FAILED:
        print("FAILED:", message)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
