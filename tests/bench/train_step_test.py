"""The train-step scaling benchmark's smoke mode: its JSON, and efficiency and OT share."""

import json
import statistics

import pytest

from experiments.configs import bench_train as bench_config
from experiments.configs import synthetic_mtpkdot
from mtpkd_jax.bench import train_step
from tests import cpu_env


@pytest.mark.slow
def test_smoke_run_writes_rows_efficiency_and_ot_share(tmp_path, monkeypatch):
  # Its processes inherit the environment; the figures are not checked here, so compile fast.
  monkeypatch.setenv(cpu_env.DISABLE_MOST_OPTIMIZATIONS, "1")
  config = bench_config.get_config("smoke")
  train_step.run(config, synthetic_mtpkdot.get_config(config.experiment), tmp_path)
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
    student, no_ot = rows[("student", n)]["times_s"], rows[("student_no_ot", n)]["times_s"]
    want = statistics.median(1 - b / a for a, b in zip(student, no_ot, strict=True))
    assert result["ot_share"][str(n)] == pytest.approx(want)
  # Without the OT term the student's loss is alpha times the task loss alone: lower.
  assert rows[("student_no_ot", 1)]["loss"] < rows[("student", 1)]["loss"]


def test_summarize_efficiency_is_t1_over_tn_and_ot_share_pairs_rounds():
  # Per round: student, student_no_ot. Round shares at 1 device 0.5, 0.25, 0.5 (median 0.5,
  # where the medians' ratio gives 1 - 3/4 = 0.25); at 4 devices 0.25, 0.75, 0.25 (median
  # 0.25, the medians' ratio 1 - 3/8 = 0.625).
  times = {
    ("student", 1): [2.0, 4.0, 10.0],
    ("student_no_ot", 1): [1.0, 3.0, 5.0],
    ("student", 4): [4.0, 8.0, 8.0],
    ("student_no_ot", 4): [3.0, 2.0, 6.0],
    ("backbone", 1): [1.0, 1.0, 1.0],
    ("backbone", 4): [0.5, 0.5, 0.5],
  }
  medians = {("student", 1): 4.0, ("student_no_ot", 1): 3.0, ("student", 4): 8.0}
  medians |= {("student_no_ot", 4): 3.0, ("backbone", 1): 1.0, ("backbone", 4): 0.5}
  rows = [
    {"step": s, "devices": n, "times_s": t, "median_s": medians[s, n]}
    for (s, n), t in times.items()
  ]
  result = train_step.summarize(rows)
  assert [r["efficiency"] for r in result["rows"]] == [1.0, 1.0, 0.5, 1.0, 1.0, 2.0]
  assert result["ot_share"] == {"1": 0.5, "4": 0.25}
