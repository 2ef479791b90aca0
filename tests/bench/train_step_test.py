"""The train-step scaling benchmark's smoke mode: its JSON, and efficiency and OT share."""

import json

import pytest

from experiments.configs import bench_train as bench_config
from mtpkd_jax.bench import train_step
from tests import cpu_env


def test_smoke_run_writes_rows_efficiency_and_ot_share(tmp_path, monkeypatch):
  # Its processes inherit the environment; the figures are not checked here, so compile fast.
  monkeypatch.setenv(cpu_env.DISABLE_MOST_OPTIMIZATIONS, "1")
  config = bench_config.get_config("smoke")
  train_step.run(config, tmp_path)
  result = json.loads((tmp_path / "bench_train.json").read_text())
  assert (tmp_path / "bench_train.png").stat().st_size > 0
  assert result["config"]["device_counts"] == [1, 2]
  rows = {(r["step"], r["devices"]): r for r in result["rows"]}
  assert set(rows) == {(s, n) for s in train_step.STEPS for n in (1, 2)}
  for (step, n), r in rows.items():
    assert r["global_batch"] == n * config.per_device_batch
    assert len(r["times_s"]) == config.repeats
    assert r["median_s"] == pytest.approx(sorted(r["times_s"])[config.repeats // 2])
    assert r["examples_per_s"] == pytest.approx(r["global_batch"] / r["median_s"])
    assert r["efficiency"] == pytest.approx(rows[(step, 1)]["median_s"] / r["median_s"])
    assert r["loss"] > 0 and r["compile_s"] > 0
  for n in (1, 2):
    want = 1 - rows[("student_no_ot", n)]["median_s"] / rows[("student", n)]["median_s"]
    assert result["ot_share"][str(n)] == pytest.approx(want)
  # Without the OT term the student's loss is alpha times the task loss alone: lower.
  assert rows[("student_no_ot", 1)]["loss"] < rows[("student", 1)]["loss"]


def test_summarize_efficiency_is_t1_over_tn():
  rows = [
    {"step": s, "devices": n, "median_s": t}
    for s, n, t in [("student", 1, 2.0), ("student", 4, 4.0), ("student_no_ot", 1, 1.5)]
    + [("student_no_ot", 4, 3.0), ("backbone", 1, 1.0), ("backbone", 4, 0.5)]
  ]
  result = train_step.summarize(rows)
  assert [r["efficiency"] for r in result["rows"]] == [1.0, 0.5, 1.0, 0.5, 1.0, 2.0]
  assert result["ot_share"] == {"1": 0.25, "4": 0.25}
