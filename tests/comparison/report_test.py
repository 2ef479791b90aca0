"""Report numbers against NumPy written here, and the Markdown/CSV/JSON files."""

import copy
import csv
import json
import math

import numpy as np
import pytest

from mtpkd_jax.comparison import report

METHODS = ("joint_teacher", "visual_only", "pkd", "pkdot", "mt_pkdot")
CLASSIFICATION = ("accuracy", "macro_f1")
REGRESSION = ("ccc_valence", "ccc_arousal", "ccc_mean")


def _results(metrics=CLASSIFICATION, folds=3, seeds=2, seed=0):
  """Random scores `[run, method, metric]` and the results dict that holds them."""
  scores = np.random.default_rng(seed).uniform(0.4, 0.95, (folds * seeds, len(METHODS), 2))
  scores = np.concatenate([scores, scores.mean(-1, keepdims=True)], -1)[..., : len(metrics)]
  runs = [
    {
      "run": index,
      "fold": index // seeds,
      "seed": index % seeds,
      "wall_time_s": 1.0,
      "methods": {
        method: {metric: float(scores[index, m, k]) for k, metric in enumerate(metrics)}
        for m, method in enumerate(METHODS)
      },
    }
    for index in range(folds * seeds)
  ]
  results = {
    "dataset": "synthetic_affect/pain_binary",
    "task": "classification" if metrics == CLASSIFICATION else "regression",
    "metrics": list(metrics),
    "baseline": "visual_only",
    "runs": runs,
    "wall_time_s": 10.0,
  }
  return results, scores


def _se(values):
  return np.std(values, ddof=1) / np.sqrt(len(values))


@pytest.mark.parametrize("metrics", [CLASSIFICATION, REGRESSION])
def test_summary_matches_numpy(metrics):
  results, scores = _results(metrics)
  summary = report.summarize(results)
  assert [row["method"] for row in summary] == list(METHODS)
  base = METHODS.index("visual_only")
  for m, row in enumerate(summary):
    assert row["runs"] == 6
    for k, metric in enumerate(metrics):
      stats = row["metrics"][metric]
      difference = scores[:, m, k] - scores[:, base, k]
      assert stats["mean"] == pytest.approx(scores[:, m, k].mean())
      assert stats["stderr"] == pytest.approx(_se(scores[:, m, k]))
      assert stats["delta"] == pytest.approx(difference.mean(), abs=1e-12)
      assert stats["delta_stderr"] == pytest.approx(_se(difference), abs=1e-12)
      assert stats["delta_runs"] == 6
      assert stats["wins"] == np.sum(difference > 0)
  assert summary[base]["metrics"][metrics[0]]["delta"] == 0.0


def test_missing_method_uses_its_runs_and_pairs_only_shared_runs():
  results, scores = _results()
  del results["runs"][1]["methods"]["pkd"]
  del results["runs"][4]["methods"]["visual_only"]
  rows = {row["method"]: row for row in report.summarize(results)}
  pkd, base = METHODS.index("pkd"), METHODS.index("visual_only")
  has_pkd = [0, 2, 3, 4, 5]
  paired = [0, 2, 3, 5]
  accuracy = rows["pkd"]["metrics"]["accuracy"]
  assert rows["pkd"]["runs"] == 5
  assert rows["visual_only"]["runs"] == 5
  assert accuracy["mean"] == pytest.approx(scores[has_pkd, pkd, 0].mean())
  assert accuracy["stderr"] == pytest.approx(_se(scores[has_pkd, pkd, 0]))
  difference = scores[paired, pkd, 0] - scores[paired, base, 0]
  assert accuracy["delta"] == pytest.approx(difference.mean())
  assert accuracy["delta_stderr"] == pytest.approx(_se(difference))
  assert accuracy["delta_runs"] == 4


def test_wins_count_strictly_better_runs_in_each_metric_direction():
  results, _ = _results()
  differences = [0.1, -0.1, 0.0, 0.2, 0.3, -0.2]
  for run, difference in zip(results["runs"], differences, strict=True):
    base = run["methods"]["visual_only"]
    run["methods"]["pkd"] = {"accuracy": base["accuracy"] + difference, "mae": 0.5 + difference}
    base["mae"] = 0.5
  results["metrics"] = ("accuracy", "mae")
  pkd = {row["method"]: row for row in report.summarize(results)}["pkd"]["metrics"]
  assert pkd["accuracy"]["wins"] == 3
  assert pkd["mae"]["wins"] == 2  # a smaller error is better


def test_single_run_has_no_standard_error():
  results, scores = _results(folds=1, seeds=1)
  rows = report.summarize(results)
  assert rows[0]["metrics"]["accuracy"]["mean"] == pytest.approx(scores[0, 0, 0])
  assert math.isnan(rows[0]["metrics"]["accuracy"]["stderr"])
  table = report.markdown_table(results)
  assert f"| {scores[0, 0, 0]:.3f} ± n/a |" in table
  assert "1 runs (each one fold and one seed: 1 folds, 1 seeds)" in table


def test_missing_baseline_raises():
  results, _ = _results()
  results["baseline"] = "nope"
  with pytest.raises(ValueError, match="nope"):
    report.summarize(results)


def test_markdown_table_cells():
  results, scores = _results()
  results["scoring"] = "frame: CCC over every annotated test frame"
  table = report.markdown_table(results)
  assert "synthetic_affect/pain_binary" in table
  assert "scored per frame: CCC over every annotated test frame" in table
  assert "6 runs (each one fold and one seed: 3 folds, 2 seeds)" in table
  assert "standard error" in table
  header = "| method | accuracy | macro_f1 | Δ accuracy vs visual_only | "
  assert header + "Δ macro_f1 vs visual_only | runs |" in table
  m, base = METHODS.index("mt_pkdot"), METHODS.index("visual_only")
  difference = scores[:, m, 0] - scores[:, base, 0]
  row = next(line for line in table.splitlines() if line.startswith("| mt_pkdot |"))
  cells = [cell.strip() for cell in row.strip("|").split("|")]
  assert cells[1] == f"{scores[:, m, 0].mean():.3f} ± {_se(scores[:, m, 0]):.3f}"
  wins = np.sum(difference > 0)
  assert cells[3] == f"{difference.mean():+.3f} ± {_se(difference):.3f} ({wins}/6)"
  assert cells[-1] == "6"


def test_write_reports_round_trip(tmp_path):
  results, _ = _results(REGRESSION)
  del results["runs"][0]["methods"]["pkd"]
  original = copy.deepcopy(results)
  paths = report.write_reports(results, tmp_path / "out")
  assert results == original
  assert paths["markdown"].read_text() == report.markdown_table(results)
  summary = report.summarize(results)
  with open(paths["csv"], newline="") as file:
    rows = list(csv.DictReader(file))
  assert len(rows) == len(METHODS) * len(REGRESSION)
  expected = {
    (row["method"], metric): (row["runs"], stats)
    for row in summary
    for metric, stats in row["metrics"].items()
  }
  for row in rows:
    runs, stats = expected[row["method"], row["metric"]]
    assert int(row["runs"]) == runs
    for field in ("mean", "stderr", "delta", "delta_stderr"):
      assert float(row[field]) == stats[field]
  loaded = json.loads(paths["json"].read_text())
  assert loaded["runs"] == results["runs"]
  assert loaded["summary"] == summary


def test_json_writes_nan_as_null(tmp_path):
  results, _ = _results(folds=1, seeds=1)
  loaded = json.loads(report.write_reports(results, tmp_path)["json"].read_text())
  assert loaded["summary"][0]["metrics"]["accuracy"]["stderr"] is None
