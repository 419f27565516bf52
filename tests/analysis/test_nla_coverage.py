#!/usr/bin/python3
"""analysis/nla_coverage.py on synthetic runs with a known answer: five anchors (1, 2, 4, 6,
7) over layers 0-7 whose `av` cosine falls off with the distance to the anchor; at a
threshold of 0.58 an anchor covers the layers within 2 of it, so the smallest covers are
pairs (the exact search finds the best-scoring one; the greedy one, forced, still covers every layer), the
layers beyond the runs are reported uncovered, every output exists, the map has ink, and
nla_report.py shows the map when RUN/coverage exists; a threshold no set reaches gives the
"No set of anchors ..." statement with the best achievable minimum; nla_report.py on a
several-anchor run directory (RUN/anchor_<L>/, RUN/coverage.json) builds the top page and
every anchor's report, each anchor's headline table with its FVE from /layer_metrics and the
definitions line (results.h5 version 2). Bad input exits 2, and so does a several-anchor run
directory with an anchor run of an older results.h5 version."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
analysis = os.path.join(here, "..", "..", "analysis")
sys.path.insert(0, here)
sys.path.insert(0, analysis)
import make_synthetic_results  # noqa: E402
import nla_coverage  # noqa: E402
import nla_report  # noqa: E402

ANCHORS = [1, 2, 4, 6, 7]


def make_runs(root):
    runs = []
    for anchor in ANCHORS:
        run = os.path.join(root, f"anchor{anchor}")
        os.makedirs(run)
        make_synthetic_results.make(os.path.join(run, "results.h5"), anchor=anchor, seed=anchor)
        runs.append(run)
    return runs


class Coverage(unittest.TestCase):
    def test_exact_cover_and_outputs(self):
        with tempfile.TemporaryDirectory() as root:
            runs = make_runs(root)
            out = os.path.join(runs[0], "coverage")
            status = nla_coverage.main(runs + ["--range", "0-9", "--min-cosine", "0.58", "--out", out])
            self.assertEqual(status, 0)
            info = json.load(open(os.path.join(out, "coverage.json")))
            self.assertEqual(info["method"], "exact")
            chosen = sorted(c["anchor"] for c in info["chosen"])
            # Pairs within 2 of every layer 0-7: {1, 6}, {2, 6}, {2, 7}; no single anchor is.
            # Among them the tie-break takes the highest summed best mean over the range.
            means = {int(os.path.basename(run)[6:]): {int(l): v for l, v in m.items() if v is not None}
                     for run, m in info["means"].items()}
            value = lambda pair: sum(max(means[a].get(l, -1) for a in pair) for l in range(8))
            pairs = [[1, 6], [2, 6], [2, 7]]
            self.assertIn(chosen, pairs)
            self.assertEqual(value(chosen), max(value(p) for p in pairs))
            self.assertEqual(info["uncovered_layers"], [8, 9])
            rows = list(csv.DictReader(open(os.path.join(out, "coverage.csv"))))
            self.assertEqual([int(r["layer"]) for r in rows], list(range(10)))
            for r in rows[:8]:  # the nearest anchor is the best one (means 0.9 at distance 0)
                best = int(r["best_anchor"])
                self.assertEqual(abs(best - int(r["layer"])), min(abs(a - int(r["layer"])) for a in ANCHORS), r)
            self.assertIn("anchor 2", open(os.path.join(out, "coverage.md")).read())
            for ext, size in (("png", 10_000), ("pdf", 5_000)):
                self.assertGreater(os.path.getsize(os.path.join(out, f"coverage_map.{ext}")), size)
            pixels = mpimg.imread(os.path.join(out, "coverage_map.png"))[..., :3]
            self.assertGreater(float(pixels.std()), 0.05)
            report = open(nla_report.build(runs[0])).read()
            self.assertIn("## Anchor coverage", report)
            self.assertIn("../coverage/coverage_map.png", report)

    def test_no_set_reaches_a_high_threshold(self):
        with tempfile.TemporaryDirectory() as root:
            runs = [nla_coverage.read_run(run, "cosine", os.path.basename(run)) for run in make_runs(root)]
            result = nla_coverage.coverage(runs, list(range(8)), 0.99)
            self.assertEqual(result["uncovered"], list(range(8)))
            self.assertEqual(result["chosen"], [])
            best = min(max(r["means"][l] for r in runs) for l in range(8))
            self.assertEqual(result["best_min"], best)
            self.assertTrue(result["statement"].startswith("No set of anchors keeps every layer of 0-7 at cosine >= 0.99"),
                            result["statement"])
            self.assertIn(f"the best achievable minimum is {best:.3f}", result["statement"])
            # A range beyond the runs: the layers without data make the minimum undefined.
            beyond = nla_coverage.coverage(runs, list(range(6, 10)), 0.5)
            self.assertTrue(np.isnan(beyond["best_min"]))
            self.assertEqual(beyond["weakest"], 8)
            self.assertIn("undefined (no anchor was evaluated at layer 8)", beyond["statement"])

    def test_report_of_a_several_anchor_run(self):
        """The layout `nla eval --av A,B --ar C,D` writes (coverage.csv/json in the shared
        format, here from nla_coverage itself): the top page, the anchor reports, the map."""
        with tempfile.TemporaryDirectory() as run:
            names = []
            for anchor in (1, 6):
                os.makedirs(os.path.join(run, f"anchor_{anchor}"))
                make_synthetic_results.make(os.path.join(run, f"anchor_{anchor}", "results.h5"), anchor=anchor,
                                            seed=anchor)
                names.append(f"anchor_{anchor}")
            runs = [nla_coverage.read_run(os.path.join(run, name), "cosine", name) for name in names]
            recorded = nla_coverage.write_outputs(runs, list(range(8)), 0.58, "cosine", run, with_map=False)
            report = nla_report.build(run)
            self.assertEqual(report, os.path.join(run, "report", "report.md"))
            with open(report) as handle:
                text = handle.read()
            self.assertIn("# NLA evaluation: 2 anchors (layers 1, 6)", text)
            self.assertIn(recorded["statement"], text)
            self.assertIn("agrees with nla_coverage.py", text)
            self.assertIn("![coverage map](coverage/coverage_map.png)", text)
            self.assertGreater(os.path.getsize(os.path.join(run, "report", "coverage", "coverage_map.png")), 10_000)
            # Each anchor's headline: FVE the per-layer figure of /layer_metrics, the definitions line.
            self.assertEqual(text.count("FVE: 1 - sum_d Var_i(x - y) / sum_d Var_i(x) over the layer's samples, "
                                        "reconstructions in the activation's scale (AR target: normalized"), 2)
            for anchor in (1, 6):
                figure = make_synthetic_results.layer_fve(anchor=anchor)["av"][anchor]
                section = text.split(f"### Anchor layer {anchor}")[1]
                av_row = next(line for line in section.splitlines() if line.startswith("| av |"))
                self.assertEqual(av_row.split("|")[3].strip(), f"{figure:.3f}", av_row)
            for name in names:
                self.assertIn(f"(../{name}/report/report.md)", text)
                self.assertIn(f"(../{name}/report/figures/metric_vs_layer.png)", text)
                self.assertTrue(os.path.exists(os.path.join(run, name, "report", "figures", "metric_vs_layer.png")))
            with open(os.path.join(run, "coverage.csv")) as handle:
                header = handle.readline().strip().split(",")
            self.assertEqual(header, ["layer", "in_range", "best_anchor", "best_mean", "best_run"] + names)

    def test_several_anchor_run_with_an_older_results_version_exits_two(self):
        with tempfile.TemporaryDirectory() as run:
            names = []
            for anchor, version in ((1, 2), (6, 1)):
                os.makedirs(os.path.join(run, f"anchor_{anchor}"))
                make_synthetic_results.make(os.path.join(run, f"anchor_{anchor}", "results.h5"), anchor=anchor,
                                            seed=anchor, n=30, version=version)
                names.append(f"anchor_{anchor}")
            runs = [nla_coverage.read_run(os.path.join(run, name), "cosine", name) for name in names]
            nla_coverage.write_outputs(runs, list(range(8)), 0.58, "cosine", run, with_map=False)
            result = subprocess.run([sys.executable, os.path.join(analysis, "nla_report.py"), run],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn(os.path.join(run, "anchor_6", "results.h5") + ": results.h5 version 1", result.stderr)
            self.assertIn("re-run `nla eval`", result.stderr)

    def test_greedy_beyond_the_exact_limit_still_covers(self):
        covers = [{0, 1, 2, 3, 4}, {2, 3, 4, 5, 6}, {4, 5, 6, 7}, {0, 1}, {7}]
        scores = [{l: 1.0 for l in c} for c in covers]
        old = nla_coverage.EXACT_LIMIT
        try:
            nla_coverage.EXACT_LIMIT = 0
            chosen, method = nla_coverage.choose_cover(covers, scores, list(range(8)))
        finally:
            nla_coverage.EXACT_LIMIT = old
        self.assertEqual(method, "greedy")
        self.assertEqual(set().union(*(covers[a] for a in chosen)), set(range(8)))
        exact, _ = nla_coverage.choose_cover(covers, scores, list(range(8)))
        self.assertEqual(sorted(exact), [0, 2])

    def test_missing_run_exits_two(self):
        with tempfile.TemporaryDirectory() as root:
            result = subprocess.run([sys.executable, os.path.join(analysis, "nla_coverage.py"), root, "--range", "0-3",
                                     "--min-cosine", "0.5", "--out", os.path.join(root, "c")],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn("results.h5: no such file", result.stderr)


if __name__ == "__main__":
    unittest.main()
