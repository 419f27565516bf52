#!/usr/bin/python3
"""analysis/nla_steer_report.py on a synthetic audit.h5 with a known effect
(make_synthetic_audit.py: cos_v rises with the scale for the steering vector and stays flat
for the random direction; KL rises for both; mentions rise for the vector): every output
exists and the figure is a real picture; stats.csv finds the vector's cos_v at the largest
scale significant and the random direction's not; one cell's p-value equals
scipy.stats.wilcoxon on per-prompt means computed here independently (a prompt whose answers
all failed drops out of its pairs), KL against its all-zero scale 0 too; the q-values equal
statsmodels' fdr_bh over all the report's tests; no differences at all give p = 1; the
figure's curves are the means over samples with the unsteered value dashed; without concept
words there are no mention tests and the panel says so; the page escapes '|' and newlines
in the examples and shows the provenance. A missing file, another format ("nla-eval"),
another version or a missing dataset exits 2 with one stderr line and writes nothing."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import wilcoxon  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
analysis = os.path.join(here, "..", "..", "analysis")
sys.path.insert(0, here)
sys.path.insert(0, analysis)
import make_synthetic_audit  # noqa: E402
import nla_figures  # noqa: E402
import nla_steer_report  # noqa: E402

SCRIPT = os.path.join(analysis, "nla_steer_report.py")


def read_stats(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("scale", "median_scale0", "median_scaled", "median_difference", "statistic", "p_value", "q_value"):
            row[key] = float(row[key])
        row["n"] = int(row["n"])
        row["significant"] = row["significant"] == "True"
    return rows


def cell(rows, direction, metric, scale):
    found = [r for r in rows if r["direction"] == direction and r["metric"] == metric and r["scale"] == scale]
    assert len(found) == 1, (direction, metric, scale, found)
    return found[0]


def prompt_means(path, direction, scale, metric):
    """Each prompt's mean of `metric` over its slots, NaN dropped; NaN for a prompt without any
    value (written here independently of the script)."""
    with h5py.File(path, "r") as f:
        directions = [d.decode() if isinstance(d, bytes) else d for d in f["samples/direction"][()]]
        scales = f["samples/scale"][()]
        prompts = f["samples/prompt"][()]
        values = f[f"samples/{metric}"][()].astype(float)
        n_prompts = len(f["prompts"])
    means = []
    for p in range(n_prompts):
        chosen = [v for d, s, q, v in zip(directions, scales, prompts, values)
                  if d == direction and s == scale and q == p and not np.isnan(v)]
        means.append(sum(chosen) / len(chosen) if chosen else float("nan"))
    return np.array(means)


class SteerReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.run_dir = os.path.join(cls.tmp.name, "run")
        cls.audit = make_synthetic_audit.make(cls.run_dir)
        result = subprocess.run([sys.executable, SCRIPT, cls.run_dir], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        cls.report_dir = os.path.join(cls.run_dir, "report")
        assert result.stdout.strip() == os.path.join(cls.report_dir, "steer_report.md"), result.stdout
        cls.stats = read_stats(os.path.join(cls.report_dir, "stats.csv"))
        with open(os.path.join(cls.report_dir, "steer_report.md")) as handle:
            cls.page = handle.read()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_every_output_exists_and_the_figure_has_ink(self):
        png = os.path.join(self.report_dir, "figures", "dose_response.png")
        pdf = os.path.join(self.report_dir, "figures", "dose_response.pdf")
        self.assertGreater(os.path.getsize(png), 10_000)
        self.assertGreater(os.path.getsize(pdf), 5_000)
        pixels = mpimg.imread(png)[..., :3]
        self.assertGreater(float(pixels.std()), 0.05, "blank figure")
        self.assertGreater(float((pixels.mean(axis=2) < 0.5).mean()), 0.005, "almost no ink")
        self.assertIn("figures/dose_response.png", self.page)
        self.assertFalse([n for n in os.listdir(self.report_dir) if n.endswith(".tmp")])

    def test_known_effect(self):
        largest = make_synthetic_audit.SCALES[-1]
        self.assertTrue(cell(self.stats, "vector", "cos_v", largest)["significant"])
        self.assertLess(cell(self.stats, "vector", "cos_v", largest)["q_value"], 1e-3)
        self.assertFalse(cell(self.stats, "random", "cos_v", largest)["significant"])
        self.assertTrue(cell(self.stats, "vector", "mentions", largest)["significant"])
        for direction in ("vector", "random"):
            self.assertTrue(cell(self.stats, direction, "kl", largest)["significant"])
        # every direction x scale > 0 x metric, and nothing else
        scales = make_synthetic_audit.SCALES[1:]
        self.assertEqual(len(self.stats), 2 * len(scales) * 4)
        self.assertEqual({r["metric"] for r in self.stats}, {"cos_v", "proj_v", "mentions", "kl"})

    def test_p_value_equals_scipy_on_per_prompt_means(self):
        scale = make_synthetic_audit.SCALES[2]  # the cell where one prompt's answers all failed
        scaled = prompt_means(self.audit, "vector", scale, "cos_v")
        baseline = prompt_means(self.audit, "vector", 0.0, "cos_v")
        self.assertTrue(np.isnan(scaled[make_synthetic_audit.FAILED_PROMPT]))
        keep = ~np.isnan(scaled) & ~np.isnan(baseline)
        expected = wilcoxon(scaled[keep], baseline[keep])
        row = cell(self.stats, "vector", "cos_v", scale)
        self.assertEqual(row["n"], int(keep.sum()))
        self.assertEqual(row["n"], 19)
        self.assertAlmostEqual(row["p_value"], float(expected.pvalue), delta=1e-12 * max(1.0, expected.pvalue))
        self.assertAlmostEqual(row["statistic"], float(expected.statistic), places=9)
        self.assertAlmostEqual(row["median_difference"], float(np.median(scaled[keep] - baseline[keep])), places=12)
        # A flat cell and KL against its all-zero scale 0 (the differences are the values).
        for direction, metric, scale in (("random", "cos_v", make_synthetic_audit.SCALES[-1]),
                                         ("random", "kl", make_synthetic_audit.SCALES[1])):
            scaled = prompt_means(self.audit, direction, scale, metric)
            baseline = prompt_means(self.audit, direction, 0.0, metric)
            if metric == "kl":
                self.assertTrue(np.all(baseline == 0))
            keep = ~np.isnan(scaled) & ~np.isnan(baseline)
            expected = wilcoxon(scaled[keep], baseline[keep])
            row = cell(self.stats, direction, metric, scale)
            self.assertEqual(row["n"], int(keep.sum()))
            self.assertAlmostEqual(row["p_value"], float(expected.pvalue), delta=1e-12 * max(1.0, expected.pvalue))

    def test_q_values_equal_statsmodels_fdr_bh(self):
        p = np.array([r["p_value"] for r in self.stats])
        reject, q, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
        np.testing.assert_allclose([r["q_value"] for r in self.stats], q, rtol=1e-12, atol=0)
        self.assertEqual([r["significant"] for r in self.stats], list(q < 0.05))

    def test_no_difference_at_all_is_p_one(self):
        row = nla_steer_report.paired_wilcoxon(np.zeros(6), np.zeros(6))
        self.assertEqual((row["n"], row["p_value"], row["median_difference"]), (6, 1.0, 0.0))
        self.assertTrue(np.isnan(row["statistic"]))
        row = nla_steer_report.paired_wilcoxon([np.nan, 1.0], [0.0, np.nan])
        self.assertEqual((row["n"], row["p_value"]), (0, 1.0))

    def test_page(self):
        page = self.page
        self.assertIn("# NLA steering audit: layer 6", page)
        self.assertIn("|v| = 12, 0.3 x the layer's median activation norm 40", page)
        self.assertIn("scales 0, 0.5, 1, 2, 4", page)
        self.assertIn("20 prompts", page)
        self.assertIn("80 verbalized activations per direction and scale", page)
        self.assertIn("`ocean`, `wave`", page)
        # Headline row of the largest scale: cos_v vector and random, means over samples (NaN skipped).
        with h5py.File(self.audit, "r") as f:
            directions = f["samples/direction"].asstr()[()]
            scales = f["samples/scale"][()]
            cos = f["samples/cos_v"][()]
            kl = f["samples/kl"][()]
        largest = make_synthetic_audit.SCALES[-1]
        line = next(l for l in page.splitlines() if l.startswith(f"| {largest:g} | "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column, direction in ((1, "vector"), (2, "random")):
            keep = (directions == direction) & (scales == largest)
            self.assertEqual(cells[column], f"{np.nanmean(cos[keep]):.3f}")
            self.assertEqual(cells[column + 4], f"{np.mean(kl[keep]):.3f}")
        # The stats table has every test; the examples escape '|' and newlines.
        self.assertEqual(sum(1 for l in page.splitlines() if l.startswith("| vector | ") or
                             l.startswith("| random | ")), len(self.stats))
        self.assertIn("Prompt 0 continues \\| at scale 4 ⏎ the ocean", page)
        examples = page[page.index("## Examples"):page.index("## Provenance")]
        rows = [l for l in examples.splitlines() if l.startswith("| ") and l[2].isdigit()]
        self.assertEqual(len(rows), 3 * len(make_synthetic_audit.SCALES))
        for row in rows:
            self.assertEqual(row.replace("\\|", "").count("|"), 5, row)
        self.assertIn("…", rows[0])
        # The provenance as pretty JSON.
        block = page[page.index("```json") + len("```json"):]
        block = block[:block.index("```")]
        self.assertEqual(json.loads(block)["nla_version"], "0.0.0-synthetic")
        self.assertNotIn("Warning", page)

    def test_figure_curves(self):
        captured = []
        original = nla_figures.save
        nla_figures.save = lambda fig, out_dir, name: captured.append(fig) or []
        try:
            audit = nla_steer_report.read_audit(self.audit)
            with tempfile.TemporaryDirectory() as out:
                nla_steer_report.dose_response(audit, out)
        finally:
            nla_figures.save = original
        axes = captured[0].axes
        self.assertEqual(len(axes), 4)
        cos_panel = axes[0]
        labels = {line.get_label(): line for line in cos_panel.get_lines()}
        labels.update({c.get_label(): c.lines[0] for c in cos_panel.containers})  # errorbar: label on the container
        with h5py.File(self.audit, "r") as f:
            directions = f["samples/direction"].asstr()[()]
            scales = f["samples/scale"][()]
            cos = f["samples/cos_v"][()]
        for direction, label in (("vector", "steering vector"), ("random", "random direction, same norm")):
            expected = [np.nanmean(cos[(directions == direction) & (scales == s)]) for s in make_synthetic_audit.SCALES]
            np.testing.assert_allclose(labels[label].get_ydata(), expected, rtol=0, atol=1e-12)
            np.testing.assert_allclose(labels[label].get_xdata(), make_synthetic_audit.SCALES)
        unsteered = labels["unsteered (scale 0)"]
        self.assertEqual(unsteered.get_linestyle(), "--")
        self.assertAlmostEqual(unsteered.get_ydata()[0], np.nanmean(cos[(directions == "vector") & (scales == 0)]))
        plt.close("all")

    def test_without_concept_words(self):
        captured = []
        with tempfile.TemporaryDirectory() as tmp:
            path = make_synthetic_audit.make(tmp, n_prompts=8, concept_words=())
            original = nla_figures.save
            nla_figures.save = lambda fig, out_dir, name: captured.append(fig) or []
            try:
                report = nla_steer_report.build(tmp, os.path.join(tmp, "elsewhere"), examples=1)
            finally:
                nla_figures.save = original
            self.assertEqual(report, os.path.join(tmp, "elsewhere", "steer_report.md"))
            stats = read_stats(os.path.join(tmp, "elsewhere", "stats.csv"))
            with open(report) as handle:
                page = handle.read()
            self.assertTrue(path.endswith("audit.h5"))
        self.assertNotIn("mentions", {r["metric"] for r in stats})
        self.assertEqual(len(stats), 2 * 4 * 3)
        self.assertIn("none given (no mention rate)", page)
        texts = [t.get_text() for t in captured[0].axes[1].texts]
        self.assertIn("no concept words given", texts)
        plt.close("all")

    def assert_refused(self, path, run_arg, *expected):
        result = subprocess.run([sys.executable, SCRIPT, run_arg], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertTrue(result.stderr.startswith("nla_steer_report: "), result.stderr)
        self.assertIn(path, result.stderr)
        for text in expected:
            self.assertIn(text, result.stderr)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(path), "report")), "no partial report")

    def test_bad_input_exits_two(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assert_refused(os.path.join(tmp, "audit.h5"), tmp, "no such file")
            run = os.path.join(tmp, "eval")
            path = make_synthetic_audit.make(run, n_prompts=4, fmt="nla-eval")
            self.assert_refused(path, run, "format 'nla-eval'", "expected format 'nla-steer-audit'")
            run = os.path.join(tmp, "v2")
            path = make_synthetic_audit.make(run, n_prompts=4, version=2)
            self.assert_refused(path, run, "version 2", "reads version 1")
            run = os.path.join(tmp, "nokl")
            path = make_synthetic_audit.make(run, n_prompts=4, drop="samples/kl")
            self.assert_refused(path, path, "dataset '/samples/kl' is missing")
            run = os.path.join(tmp, "text")
            os.makedirs(run)
            with open(os.path.join(run, "audit.h5"), "w") as handle:
                handle.write("not hdf5\n")
            self.assert_refused(os.path.join(run, "audit.h5"), run, "not an HDF5 file")


if __name__ == "__main__":
    unittest.main()
