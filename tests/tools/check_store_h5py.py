#!/usr/bin/python3
"""Reads an nla activation store with h5py (an independent reader) and checks the layout
of DESIGN section 4. Prints "ok n=<samples>" or exits non-zero with the reason."""
import json
import sys

import h5py
import numpy as np


def main(path):
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        assert attrs["format"] == "nla-activations", attrs["format"]
        for key in ("version", "model", "model_config", "tokenizer_sha256", "seed", "positions_per_doc", "created_by"):
            assert key in attrs, f"attribute {key} missing"
        assert int(attrs["complete"]) == 1
        n = f["samples/doc"].shape[0]
        assert f["samples/doc"].dtype == np.int64
        assert f["samples/position"].dtype == np.int32 and f["samples/position"].shape == (n,)
        assert f["samples/token"].dtype == np.int32 and f["samples/token"].shape == (n,)
        n_docs = f["docs/text"].shape[0]
        texts = f["docs/text"].asstr()[:]
        assert len(texts) == n_docs and all(isinstance(t, str) for t in texts)
        assert f["docs/source"].shape == (n_docs,)
        docs = f["samples/doc"][:]
        assert np.all(np.diff(docs) >= 0), "rows are ordered by document"
        assert docs.size == 0 or (docs.min() >= 0 and docs.max() < n_docs)
        layers = json.loads(attrs["layers"])
        d = int(attrs["hidden_size"])
        for layer in layers:
            acts = f[f"layers/{layer}/acts"]
            assert acts.dtype == np.float32 and acts.shape == (n, d), (acts.dtype, acts.shape)
            assert np.all(np.isfinite(acts[:]))
        print(f"ok n={n} docs={n_docs} layers={layers}")


if __name__ == "__main__":
    main(sys.argv[1])
