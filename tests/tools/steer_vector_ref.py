#!/usr/bin/python3
"""The contrastive mean difference of `nla steer-vector`, recomputed with numpy from two
`nla extract` stores of the same texts (every position stored: --positions-per-doc large,
--min-position 0), and compared with the vector file.

    steer_vector_ref.py --positive P.h5 --negative N.h5 --layer L --token last|mean
                        --min-position 1 --vector v.safetensors

Per document: the last token's row (token last) or the mean of its rows from min-position
(mean; a shorter document keeps its last); per set the mean over documents; v = positive -
negative. Tolerance: 1e-5 of the larger set mean's largest element (float32 activations,
summed in float64 on both sides; the forwards batch the texts differently). Also checks the
metadata's median norm (the median of the rows' norms from min-position) to 1e-5 relative.
Prints the errors; exits 1 when over the tolerance.
"""
import argparse
import json
import struct
import sys

import h5py
import numpy as np


def read_vector(path):
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
        data = f.read()
    info = header["vector"]
    begin, end = info["data_offsets"]
    return np.frombuffer(data[begin:end], dtype="<f4").astype(np.float64), header.get("__metadata__", {})


def reductions(path, layer, token, min_position):
    with h5py.File(path, "r") as f:
        docs = f["samples/doc"][:]
        positions = f["samples/position"][:]
        acts = f[f"layers/{layer}/acts"][:].astype(np.float64)
    rows, norms = [], []
    for doc in np.unique(docs):
        mine = np.flatnonzero(docs == doc)
        order = mine[np.argsort(positions[mine])]
        first = min(min_position, len(order) - 1)
        typical = acts[order[first:]]
        rows.append(acts[order[-1]] if token == "last" else typical.mean(axis=0))
        norms.extend(np.linalg.norm(typical, axis=1))
    return np.array(rows), norms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positive", required=True)
    parser.add_argument("--negative", required=True)
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--token", choices=("last", "mean"), required=True)
    parser.add_argument("--min-position", type=int, default=1)
    parser.add_argument("--vector", required=True)
    args = parser.parse_args()
    positive, positive_norms = reductions(args.positive, args.layer, args.token, args.min_position)
    negative, negative_norms = reductions(args.negative, args.layer, args.token, args.min_position)
    expected = positive.mean(axis=0) - negative.mean(axis=0)
    vector, metadata = read_vector(args.vector)
    scale = max(np.abs(positive.mean(axis=0)).max(), np.abs(negative.mean(axis=0)).max())
    error = np.abs(vector - expected).max()
    median = float(np.median(positive_norms + negative_norms))
    median_error = abs(float(metadata["median_norm"]) - median) / median
    counts_ok = int(metadata["n_positive"]) == len(positive) and int(metadata["n_negative"]) == len(negative)
    print(f"vector: max abs error {error:.3g} (scale {scale:.3g}, |v| {np.linalg.norm(expected):.4g}); "
          f"median norm {median:.6g}, relative error {median_error:.3g}; counts {'ok' if counts_ok else 'WRONG'}")
    if error > 1e-5 * scale or median_error > 1e-5 or not counts_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
