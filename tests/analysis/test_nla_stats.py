#!/usr/bin/python3
"""analysis/nla_stats.py on synthetic data with a known answer: a layer with a real effect
is significant after Benjamini-Hochberg, a layer without one is not; the BH adjustment
equals the hand computation; the direction follows the metric."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "analysis"))
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


if __name__ == "__main__":
    unittest.main()
