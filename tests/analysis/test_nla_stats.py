#!/usr/bin/python3
"""analysis/nla_stats.py on synthetic data with a known answer: a layer with a real effect
is significant after Benjamini-Hochberg, a layer without one is not; the BH adjustment
equals the hand computation; the direction follows the metric (fve_sample higher is
better). The command on a synthetic results.h5 (version 2) tests the per-sample metrics
cosine, fve_sample, nrmse, mse_nrm, recall10 by default; asking for `fve` (a per-layer
figure in version 2) or giving an older file exits 2 with one line."""
import csv
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "analysis"))
import make_synthetic_results  # noqa: E402
import nla_stats  # noqa: E402


class PairedTests(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        n = 200
        base = rng.normal(0.3, 0.1, size=(3, n))
        self.av = base.copy()
        self.av[0] += 0.05 + rng.normal(0, 0.02, n)   # layer 0: a real improvement
        self.av[1] += rng.normal(0, 0.02, n)          # layer 1: none (symmetric noise)
        self.av[2] -= 0.05 + rng.normal(0, 0.02, n)   # layer 2: worse than the baseline
        self.base = base

    def test_known_answer(self):
        rows = nla_stats.paired_tests(self.av, {"random": self.base}, [0, 1, 2], "cosine")
        by_layer = {r["layer"]: r for r in rows}
        self.assertTrue(by_layer[0]["significant"])
        self.assertLess(by_layer[0]["p_adjusted"], 1e-10)
        self.assertFalse(by_layer[1]["significant"])
        self.assertFalse(by_layer[2]["significant"], "one-sided: worse is not 'better'")

    def test_lower_is_better_metrics_flip_the_direction(self):
        rows = nla_stats.paired_tests(-self.av, {"mean": -self.base}, [0, 1, 2], "mse_nrm")
        by_layer = {r["layer"]: r for r in rows}
        self.assertTrue(by_layer[0]["significant"])
        self.assertFalse(by_layer[2]["significant"])

    def test_fve_sample_is_higher_is_better(self):
        rows = nla_stats.paired_tests(self.av, {"shuffled": self.base}, [0, 1, 2], "fve_sample")
        by_layer = {r["layer"]: r for r in rows}
        self.assertTrue(by_layer[0]["significant"])
        self.assertFalse(by_layer[2]["significant"])

    def test_benjamini_hochberg_matches_the_hand_computation(self):
        # p-values of layers sorted: adjusted p_(i) = min_{j>=i} p_(j) * m / j.
        rows = nla_stats.paired_tests(self.av, {"random": self.base}, [0, 1, 2], "cosine")
        p = np.array([r["p_value"] for r in rows])
        order = np.argsort(p)
        m = len(p)
        expected = np.empty(m)
        running = 1.0
        for rank in range(m, 0, -1):
            index = order[rank - 1]
            running = min(running, p[index] * m / rank)
            expected[index] = running
        np.testing.assert_allclose([r["p_adjusted"] for r in rows], expected, rtol=1e-12)

    def test_identical_conditions_and_nan_pairs(self):
        av = self.base.copy()
        av[0, :10] = np.nan
        rows = nla_stats.paired_tests(av, {"shuffled": self.base}, [0, 1, 2], "cosine")
        self.assertEqual(rows[0]["n"], 190)
        self.assertTrue(all(r["p_value"] == 1.0 and not r["significant"] for r in rows))

    def test_tables(self):
        rows = nla_stats.paired_tests(self.av, {"random": self.base}, [0, 1, 2], "cosine")
        table = nla_stats.markdown_table(rows)
        self.assertEqual(len(table.strip().splitlines()), 2 + 3)
        self.assertIn("| cosine | random | 0 |", table)


class Command(unittest.TestCase):
    def test_default_metrics_on_a_version_2_file(self):
        with tempfile.TemporaryDirectory() as run:
            path = os.path.join(run, "results.h5")
            make_synthetic_results.make(path, n_layers=4, n=40, anchor=2)
            self.assertEqual(nla_stats.main([path, "--out-dir", run]), 0)
            with open(os.path.join(run, "stats.csv")) as handle:
                rows = list(csv.DictReader(handle))
            metrics = list(dict.fromkeys(r["metric"] for r in rows))
            self.assertEqual(metrics, ["cosine", "fve_sample", "nrmse", "mse_nrm", "recall10"])
            self.assertEqual(len(rows), 5 * 3 * 4)  # metrics x baselines x layers
            # fve_sample = 2 cosine - 1 in the synthetic file: av beats random at every layer.
            fve_random = [r for r in rows if r["metric"] == "fve_sample" and r["baseline"] == "random"]
            self.assertTrue(all(r["significant"] == "True" for r in fve_random))

    def test_fve_and_older_files_exit_two(self):
        script = os.path.join(here, "..", "..", "analysis", "nla_stats.py")
        with tempfile.TemporaryDirectory() as run:
            path = os.path.join(run, "results.h5")
            make_synthetic_results.make(path, n_layers=3, n=20, anchor=1)
            result = subprocess.run([sys.executable, script, path, "--out-dir", run, "--metrics", "cosine,fve"],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn("'metrics/av/fve' is missing (FVE is a per-layer figure", result.stderr)
            make_synthetic_results.make(path, n_layers=3, n=20, anchor=1, version=1)
            result = subprocess.run([sys.executable, script, path, "--out-dir", run], capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn(f"{path}: results.h5 version 1, these scripts read version 2", result.stderr)


if __name__ == "__main__":
    unittest.main()
