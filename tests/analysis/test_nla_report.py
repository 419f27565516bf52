#!/usr/bin/python3
"""analysis/nla_report.py builds the report from a run directory (a synthetic results.h5
with a known structure): every file present, the PNGs are real pictures (size, not blank),
the page names the anchor and the significance counts; a missing results.h5 exits 2."""
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
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "analysis"))
import make_synthetic_results  # noqa: E402
import nla_report  # noqa: E402


class Report(unittest.TestCase):
    def test_builds_every_output_from_a_run_directory(self):
        with tempfile.TemporaryDirectory() as run:
            make_synthetic_results.make(os.path.join(run, "results.h5"))
            report = nla_report.build(run)
            text = open(report).read()
            self.assertIn("# NLA evaluation: anchor layer 4", text)
            self.assertIn("`av` > `random`: significant at 8 of 8 layers", text)
            for name in ("metric_vs_layer", "pca_layers", "clc_heatmap"):
                png = os.path.join(run, "report", "figures", name + ".png")
                pdf = os.path.join(run, "report", "figures", name + ".pdf")
                self.assertGreater(os.path.getsize(png), 10_000, png)
                self.assertGreater(os.path.getsize(pdf), 5_000, pdf)
                pixels = mpimg.imread(png)[..., :3]
                self.assertGreater(float(pixels.std()), 0.05, f"{png} looks blank")
                self.assertGreater(float((pixels.mean(axis=2) < 0.5).mean()), 0.005, f"{png} has almost no ink")
                self.assertIn(f"figures/{name}.png", text)
            for name in ("stats.csv", "stats.md"):
                self.assertTrue(os.path.exists(os.path.join(run, "report", name)))

    def test_missing_results_exit_two(self):
        with tempfile.TemporaryDirectory() as run:
            result = subprocess.run([sys.executable, os.path.join(here, "..", "..", "analysis", "nla_report.py"), run],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn("results.h5: no such file", result.stderr)


if __name__ == "__main__":
    unittest.main()
