"""Tests of the OT throughput benchmark, in its ``:smoke`` config (no timing assertions)."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.configs import bench_ot as bench_config
from mtpkd_jax.bench import ot_loss_runners

pytestmark = pytest.mark.slow  # Runs the OT benchmark's app end to end.

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp("bench_ot"))
  # Through the app, as a user runs it: the config file and its flags are covered too.
  subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.bench_ot",
      "--config=experiments/configs/bench_ot.py:smoke",
      "--config.repeats=3",
      f"--output_dir={output_dir}",
    ],
    cwd=ROOT,
    check=True,
    capture_output=True,
  )
  with open(os.path.join(output_dir, "bench_ot.json")) as f:
    written = json.load(f)
  return output_dir, written


def _by(results, case, impl, direction="fwd"):
  rows = [r for r in results if (r["case"], r["impl"], r["direction"]) == (case, impl, direction)]
  assert len(rows) == 1, (case, impl, direction)
  return rows[0]


def test_every_available_implementation_is_reported(report):
  _, written = report
  results = written["results"]
  available = [i for i, reason in ot_loss_runners.available().items() if reason is None]
  assert {"fused", "ott_backend", "ott_plain"} <= set(available)
  assert written["implementations"]["loss"] == available
  for impl in available:
    _by(results, "loss", impl, "fwd")
    if impl != "pot":
      _by(results, "loss", impl, "fwd+bwd")
  assert not any(r["impl"] == "pot" and r["direction"] == "fwd+bwd" for r in results)
  solver_impls = written["implementations"]["solver"]
  for case in ("solver", "hard"):
    assert {r["impl"] for r in results if r["case"] == case} == set(solver_impls)
  for impl, reason in ot_loss_runners.available().items():
    if reason is not None:
      assert impl in written["skipped"]
  assert "geomloss (solver, hard)" in written["skipped"]
  # The solve alone: every loss implementation but POT (no autodiff), forward+backward only.
  solve = {(r["impl"], r["direction"]) for r in results if r["case"] == "solve"}
  assert solve == {(impl, "fwd+bwd") for impl in available if impl != "pot"}


def test_config_is_recorded_and_checked(report):
  _, written = report
  assert written["config"]["mode"] == "smoke" and written["config"]["repeats"] == 3
  assert bench_config.get_config("full").batch_sizes[-1] == 512
  with pytest.raises(ValueError, match="Config argument"):
    bench_config.get_config("fast")


def test_gradient_column_against_geomloss(report):
  _, written = report
  fused = [r for r in written["results"] if (r["impl"], r["direction"]) == ("fused", "fwd+bwd")]
  assert {r["case"] for r in fused} == {"loss", "solve"}
  others = [r for r in written["results"] if r not in fused]
  assert all(r["grad_vs_geomloss"] is None for r in others)
  if "geomloss" in written["implementations"]["loss"]:
    assert all(0 <= r["grad_vs_geomloss"] < 1e-4 for r in fused)
  else:
    assert all(r["grad_vs_geomloss"] is None for r in fused)
    assert "torch/geomloss" in written["skipped"]["geomloss"]


def test_metadata_is_recorded(report):
  _, written = report
  assert written["device"]["platform"]
  assert written["device"]["device_kind"]
  assert written["device"]["cpu_count"] >= 1
  assert written["versions"]["jax"] and written["versions"]["ott-jax"]
  # On this CPU: the one-pass log-sum-exp, finished steps skipped, one iteration a trip.
  assert written["fused_solver"] == {
    "log_sum_exp": "one-pass",
    "loss_loop": "bounded scan, finished steps skipped",
    "check_every": 1,
  }
  assert written["exp_rate_per_s"] > 0 and written["exp_rate_memory_bound_per_s"] > 0


def test_times_ratios_and_bound_are_consistent(report):
  _, written = report
  results = written["results"]
  repeats = written["config"]["repeats"]
  for r in results:
    assert len(r["times_s"]) == repeats
    assert r["median_s"] == pytest.approx(statistics.median(r["times_s"]))
    fused = next(
      f
      for f in results
      if (f["case"], f["impl"], f["direction"], f["size"])
      == (r["case"], "fused", r["direction"], r["size"])
    )
    # Paired by round: each sample against fused's sample of the same round.
    paired = [t / f for t, f in zip(r["times_s"], fused["times_s"], strict=True)]
    assert r["ratio_to_fused"] == pytest.approx(statistics.median(paired))
    assert r["calls_per_sample"] >= 1
    # The bound pairs each sample with the exp probe of its round (tests/bench/timing_test.py).
    assert r["bound_fraction"] > 0 and r["exp_rate"] > 0
    assert r["exps"] > 0 and r["iterations"] >= 1
  # Samples of back-to-back calls lasting min_sample_s: the fast calls are run several times.
  assert written["config"]["min_sample_s"] > 0
  assert any(r["calls_per_sample"] > 1 for r in results)


def test_values_agree_where_the_problems_are_the_same(report):
  _, written = report
  results = written["results"]
  available = written["implementations"]
  # Tolerance schedule, same eps and threshold: the converged OT values agree.
  hard = {impl: _by(results, "hard", impl)["value"] for impl in available["solver"]}
  for impl, value in hard.items():
    np.testing.assert_allclose(value, hard["fused"], rtol=1e-3, err_msg=impl)
  # The loss: ott_backend, ott_plain and POT all solve the converged OT_{blur²} divergence.
  converged = [i for i in ("ott_backend", "ott_plain", "pot") if i in available["loss"]]
  reference = _by(results, "loss", converged[0])["value"]
  for impl in converged:
    for direction in ("fwd", "fwd+bwd") if impl != "pot" else ("fwd",):
      value = _by(results, "loss", impl, direction)["value"]
      np.testing.assert_allclose(value, reference, rtol=1e-2, err_msg=impl)
  # GeomLoss runs the fused backend's annealing schedule: same value.
  if "geomloss" in available["loss"]:
    for direction in ("fwd", "fwd+bwd"):
      np.testing.assert_allclose(
        _by(results, "loss", "geomloss", direction)["value"],
        _by(results, "loss", "fused", direction)["value"],
        rtol=1e-3,
      )


def test_memory_section_and_targets(report):
  _, written = report
  gradients = {row["gradient"] for row in written["memory"]}
  assert gradients == {"envelope", "unrolled"}
  envelope = [row["temp_bytes"] for row in written["memory"] if row["gradient"] == "envelope"]
  assert len(set(envelope)) == 1, "the envelope gradient must not keep per-iteration state"
  assert all(isinstance(v["met"], bool) for v in written["targets"].values())


def test_plot_is_written(report):
  output_dir, _ = report
  path = os.path.join(output_dir, "bench_ot.png")
  assert os.path.getsize(path) > 0
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
