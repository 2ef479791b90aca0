"""Plots write non-empty PNGs; `read_jsonl` survives killed and resumed runs."""

import json

import numpy as np
import pytest

from mtpkd_jax.comparison import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
  data = path.read_bytes()
  assert data.startswith(PNG_SIGNATURE)
  assert len(data) > 5000


def _log_lines(steps):
  lines = []
  for step in range(steps):
    lines.append({"step": step, "train/loss": float(np.exp(-step / 10))})
    if step % 5 == 4:
      lines.append({"step": step, "val/score": step / steps})
  return lines


def test_read_jsonl_missing_file(tmp_path):
  assert plots.read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_jsonl_skips_truncated_last_line(tmp_path):
  lines = _log_lines(10)
  path = tmp_path / "metrics.jsonl"
  text = "".join(json.dumps(line) + "\n" for line in lines)
  path.write_text(text + '{"step": 10, "train/lo')
  with pytest.warns(RuntimeWarning, match="unparsable"):
    assert plots.read_jsonl(path) == lines


def test_series_keeps_later_value_of_replayed_step():
  lines = [
    {"step": 0, "train/loss": 3.0},
    {"step": 1, "train/loss": 2.0},
    {"step": 1, "train/loss": 1.5},
    {"step": 2, "val/score": 0.5},
  ]
  steps, values = plots._series(lines, "train/loss")
  np.testing.assert_array_equal(steps, [0, 1])
  np.testing.assert_array_equal(values, [3.0, 1.5])


def test_learning_curves_png(tmp_path):
  logs = {"teacher": _log_lines(30), "student": _log_lines(20), "empty": []}
  path = plots.learning_curves(logs, tmp_path / "figs" / "curves.png")
  assert path == tmp_path / "figs" / "curves.png"
  _assert_png(path)


def test_similarity_matrices_png(tmp_path):
  features = np.random.default_rng(0).normal(size=(2, 8, 4))
  teacher, student = (x @ x.T for x in features)
  _assert_png(plots.similarity_matrices(teacher, student, tmp_path / "sim.png"))
  with pytest.raises(ValueError):
    plots.similarity_matrices(teacher, student[:4], tmp_path / "bad.png")


def test_transport_plan_png(tmp_path):
  plan = np.random.default_rng(1).uniform(size=(6, 9))
  _assert_png(plots.transport_plan(plan / plan.sum(), tmp_path / "plan.png", title="OT"))


def test_paired_differences_plot(tmp_path):
  def row(method, delta):
    stats = {"delta": delta, "delta_stderr": 0.01, "wins": 2, "delta_runs": 5}
    return {"method": method, "metrics": {"accuracy": stats}}

  summary = [row("visual_only", 0.0), row("pkdot", 0.02), row("mt_pkdot:k=10", -0.01)]
  path = plots.paired_differences(summary, "accuracy", "visual_only", tmp_path / "d.png")
  _assert_png(path)
  with pytest.raises(ValueError, match="'ccc_mean' is not in the summary"):
    plots.paired_differences(summary, "ccc_mean", "visual_only", tmp_path / "e.png")
  with pytest.raises(ValueError, match="besides the baseline"):
    plots.paired_differences(summary[:1], "accuracy", "visual_only", tmp_path / "f.png")
