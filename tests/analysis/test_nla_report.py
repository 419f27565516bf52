#!/usr/bin/python3
"""analysis/nla_report.py builds the report from a run directory (a synthetic results.h5,
version 2, with a known structure): every file present, the PNGs are real pictures (size,
not blank), the page names the anchor and the significance counts; the headline table's FVE
column is the per-layer figure of /layer_metrics (not the mean of fve_sample), with the
definitions line under the table naming the run's AR target; the metric-vs-layer FVE panel
draws /layer_metrics (symlog when a curve goes below -1); the CLC heatmap takes its colour
range from the data and prints every cell's value (up to 30 layers) in a contrasting colour.
A missing results.h5, or one of an older version, exits 2 with one line. With --steer RUN (a
synthetic steer audit) the page gains the steering section, its figure and the steer report
under report/steer/."""
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

here = os.path.dirname(os.path.abspath(__file__))
analysis = os.path.join(here, "..", "..", "analysis")
sys.path.insert(0, here)
sys.path.insert(0, analysis)
import make_synthetic_audit  # noqa: E402
import make_synthetic_results  # noqa: E402
import nla_figures  # noqa: E402
import nla_report  # noqa: E402

DEFINITIONS = ("cosine, Recall@10, nRMSE: means over samples; FVE: 1 - sum_d Var_i(x - y) / sum_d Var_i(x) over the "
               "layer's samples, reconstructions in the activation's scale")
LEAVE_ONE_OUT = "mean: each sample predicted by the mean of the layer's other evaluated samples"


def headline_rows(text):
    """{condition: [cells]} of the anchor table, and the line after the table."""
    lines = text.splitlines()
    start = lines.index("| condition | cosine | FVE | Recall@10 | nRMSE |")
    rows, index = {}, start + 2
    while lines[index].startswith("| "):
        cells = [c.strip() for c in lines[index].strip("|").split("|")]
        rows[cells[0]] = cells[1:]
        index += 1
    after = next(line for line in lines[index:] if line.strip())
    return rows, after, "\n".join(lines[start:index + 2])


class Report(unittest.TestCase):
    def test_builds_every_output_from_a_run_directory(self):
        with tempfile.TemporaryDirectory() as run:
            make_synthetic_results.make(os.path.join(run, "results.h5"))
            report = nla_report.build(run)
            with open(report) as handle:
                text = handle.read()
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
            # The headline: FVE from /layer_metrics at the anchor, the other columns means over samples.
            rows, after, block = headline_rows(text)
            self.assertEqual(list(rows), ["av", "av_normed", "shuffled", "random", "mean"])
            figures = make_synthetic_results.layer_fve()
            with h5py.File(os.path.join(run, "results.h5"), "r") as f:
                for condition, cells in rows.items():
                    self.assertEqual(cells[1], f"{figures[condition][4]:.3f}", condition)
                    self.assertNotEqual(cells[1], f"{np.mean(f[f'metrics/{condition}/fve_sample'][4]):.3f}")
                    self.assertEqual(cells[0], f"{np.mean(f[f'metrics/{condition}/cosine'][4]):.3f}")
                    self.assertEqual(cells[3], f"{np.mean(f[f'metrics/{condition}/nrmse'][4]):.3f}")
            self.assertEqual(rows["mean"][1], "0.000")
            self.assertEqual(after, DEFINITIONS + " (AR target: normalized, outputs rescaled to each layer's median "
                             "norm); " + LEAVE_ONE_OUT + ".")
            self.assertNotIn("fve_sample", block)
            with open(os.path.join(run, "report", "stats.csv")) as handle:
                self.assertIn("fve_sample", handle.read())

    def test_steer_section(self):
        with tempfile.TemporaryDirectory() as run, tempfile.TemporaryDirectory() as steer:
            make_synthetic_results.make(os.path.join(run, "results.h5"))
            make_synthetic_audit.make(steer)
            with open(nla_report.build(run, steer)) as handle:
                text = handle.read()
            self.assertIn("## Steering audit (nla steer-audit)", text)
            self.assertIn("![dose_response.png](steer/figures/dose_response.png)", text)
            self.assertTrue(os.path.exists(os.path.join(run, "report", "steer", "steer_report.md")))
            self.assertTrue(os.path.getsize(os.path.join(run, "report", "steer", "figures", "dose_response.png")) > 10000)

    def test_raw_ar_target_is_named(self):
        with tempfile.TemporaryDirectory() as run:
            make_synthetic_results.make(os.path.join(run, "results.h5"), ar_target="raw")
            with h5py.File(os.path.join(run, "results.h5"), "r") as f:
                _, table = nla_report.headline(f)
            self.assertTrue(table.rstrip().endswith(DEFINITIONS + " (AR target: raw, outputs used as they are); " + LEAVE_ONE_OUT + "."),
                            table)

    def test_fve_panel_draws_the_layer_figure(self):
        captured = []
        original = nla_figures.save
        nla_figures.save = lambda fig, out_dir, name: captured.append(fig) or []
        try:
            with tempfile.TemporaryDirectory() as run:
                path = os.path.join(run, "results.h5")
                make_synthetic_results.make(path)
                with h5py.File(path, "r") as f:
                    nla_figures.metric_vs_layer(f, run)
        finally:
            nla_figures.save = original
        axes = {ax.get_ylabel(): ax for ax in captured[0].axes if ax.get_ylabel()}
        fve = axes["FVE"]
        figures = make_synthetic_results.layer_fve()
        lines = [line for line in fve.get_lines() if line.get_label() in
                 {s["label"] for s in nla_figures.CONDITION_STYLE.values()}]
        self.assertEqual(len(lines), 5)
        for line, condition in zip(lines, nla_figures.CONDITION_STYLE):
            np.testing.assert_allclose(line.get_ydata(), figures[condition], rtol=0, atol=1e-12)
        self.assertEqual(fve.get_yscale(), "symlog", "random's figure is -1.25")
        self.assertIn("symlog below -1", fve.get_title())
        self.assertEqual(axes["cosine"].get_yscale(), "linear")
        plt.close("all")

    def test_clc_heatmap_annotated_with_data_range(self):
        layers = np.arange(6)
        clc = 0.4 + 0.5 * np.exp(-np.abs(layers[:, None] - layers[None, :]) / 2.0)
        fig, ax = plt.subplots()
        image, texts = nla_figures.draw_clc(ax, layers, clc)
        self.assertEqual(image.get_clim(), (clc.min(), clc.max()))
        self.assertEqual(len(texts), 36)
        self.assertEqual(len(ax.texts), 36)
        by_cell = {(t.get_position()[1], t.get_position()[0]): t for t in texts}
        for i in range(6):
            for j in range(6):
                self.assertEqual(by_cell[(i, j)].get_text(), f"{clc[i, j]:.2f}")
        darkest, lightest = by_cell[(0, 0)], by_cell[(0, 5)]  # the diagonal is the maximum
        self.assertEqual(matplotlib.colors.to_hex(darkest.get_color()), "#ffffff")
        self.assertEqual(matplotlib.colors.to_hex(lightest.get_color()), "#000000")
        plt.close(fig)
        # A flat matrix still gets a valid (tiny) range; beyond 30 layers no text.
        fig, ax = plt.subplots()
        image, texts = nla_figures.draw_clc(ax, layers, np.full((6, 6), 0.7))
        low, high = image.get_clim()
        self.assertLess(low, 0.7)
        self.assertGreater(high, 0.7)
        self.assertLess(high - low, 1e-3)
        self.assertEqual(len(texts), 36)
        plt.close(fig)
        fig, ax = plt.subplots()
        many = np.arange(31)
        _, texts = nla_figures.draw_clc(ax, many, np.eye(31))
        self.assertEqual(texts, [])
        plt.close(fig)

    def test_missing_results_exit_two(self):
        with tempfile.TemporaryDirectory() as run:
            result = subprocess.run([sys.executable, os.path.join(analysis, "nla_report.py"), run],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn("results.h5: no such file", result.stderr)

    def test_older_results_exit_two(self):
        with tempfile.TemporaryDirectory() as run:
            path = os.path.join(run, "results.h5")
            make_synthetic_results.make(path, version=1)
            for script, args in (("nla_report.py", [run]), ("nla_figures.py", [path, "--out-dir", run + "/fig"]),
                                 ("nla_stats.py", [path, "--out-dir", run + "/stats"])):
                result = subprocess.run([sys.executable, os.path.join(analysis, script)] + args,
                                        capture_output=True, text=True)
                self.assertEqual(result.returncode, 2, script)
                self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
                self.assertIn(f"{path}: results.h5 version 1", result.stderr)
                self.assertIn("re-run `nla eval`", result.stderr)
            self.assertFalse(os.path.exists(os.path.join(run, "report")), "no partial report")


if __name__ == "__main__":
    unittest.main()
