"""The loss and solve-only runners, and the gradient column against GeomLoss."""

import jax
import numpy as np
import pytest

from experiments.configs import bench_ot as bench_config
from mtpkd_jax.bench import ot_inputs, ot_loss_runners, ot_report

CONFIG = bench_config.get_config("smoke")


def _only(*impls, geomloss_reason=None):
  skipped = {impl: None if impl in impls else "not in this test" for impl in ot_loss_runners.IMPLS}
  if geomloss_reason is not None:
    skipped["geomloss"] = geomloss_reason
  return skipped


def _row(results, case, impl, direction="fwd+bwd"):
  (row,) = [r for r in results if (r.case, r.impl, r.direction) == (case, impl, direction)]
  return row


def test_relative_difference():
  assert ot_loss_runners.relative_difference(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0.0
  assert ot_loss_runners.relative_difference(np.array([3.0, 5.0]), np.array([3.0, 4.0])) == 0.2


@pytest.mark.parametrize("case", ot_loss_runners.CASES)
def test_fused_gradient_agrees_with_geomloss(case):
  pytest.importorskip("torch")
  pytest.importorskip("geomloss")
  results = ot_loss_runners.bench(CONFIG, case, 16, _only("fused", "geomloss"))
  fused, geomloss = _row(results, case, "fused"), _row(results, case, "geomloss")
  np.testing.assert_allclose(fused.value, geomloss.value, rtol=1e-4)
  # Two float32 implementations never agree to the bit: 0 would mean a self-comparison.
  assert fused.grad_vs_geomloss is not None and 0 < fused.grad_vs_geomloss < 1e-4
  assert geomloss.grad_vs_geomloss is None


def test_without_geomloss_the_column_says_why():
  reason = "torch/geomloss are not installed"
  results = ot_loss_runners.bench(CONFIG, "loss", 16, _only("fused", geomloss_reason=reason))
  assert {r.impl for r in results} == {"fused"}
  assert _row(results, "loss", "fused").grad_vs_geomloss is None
  ot_report.add_ratios(results)
  table = ot_report.format_table(results, reason)
  assert reason in table
  assert table.splitlines()[-1].rstrip().endswith("no GL")


def test_solve_only_excludes_the_anchors_and_keeps_the_loss_value():
  # Same clouds, same schedule: the solve alone gives the loss's value (its centroid weight is 0).
  results = []
  for case in ot_loss_runners.CASES:
    results += ot_loss_runners.bench(CONFIG, case, 16, _only("fused", "ott_plain"))
  for impl in ("fused", "ott_plain"):
    np.testing.assert_allclose(
      _row(results, "solve", impl).value, _row(results, "loss", impl).value, rtol=1e-5
    )
  assert {r.direction for r in results if r.case == "solve"} == {"fwd+bwd"}


def test_unknown_case_raises():
  with pytest.raises(ValueError, match="case"):
    ot_loss_runners.bench(CONFIG, "train", 16, _only("fused"))


def _runners(case, impl):
  student, teachers = ot_inputs.make_embeddings(16, 16, CONFIG.num_teachers, CONFIG.dim)
  builders = ot_loss_runners._loss_builders if case == "loss" else ot_loss_runners._solve_builders
  return builders(CONFIG, student, teachers)[impl]()


@pytest.mark.parametrize("case", ot_loss_runners.CASES)
def test_plain_ott_call_stages_nothing_but_its_compiled_functions(case):
  # With JAX's caches cleared, any eager op in the call (a slice of the teachers' arrays, a
  # sum of their gradients) is traced anew; the ahead-of-time compiled solver calls are not.
  runners = _runners(case, "ott_plain")
  traced = []

  def listener(event, seconds, **kwargs):
    if event == "/jax/core/compile/jaxpr_trace_duration":
      traced.append(event)

  for direction, runner in runners.items():
    runner.call()
    jax.clear_caches()
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
      runner.call()
    finally:
      jax.monitoring.unregister_event_duration_listener(listener)
    assert traced == [], f"{case} {direction}: the timed call traced {len(traced)} eager op(s)."


@pytest.mark.parametrize("case", ot_loss_runners.CASES)
def test_plain_ott_value_and_gradient_agree_with_the_ott_backend(case):
  # Both solve the converged OT_{blur²} divergence, one call per teacher against one batched
  # call: the summed values agree, and so do the gradients w.r.t. the student's embeddings
  # (loss: the plain loop's sum over teachers) or points (solve: a list, one per teacher).
  plain = _runners(case, "ott_plain")["fwd+bwd"]
  backend = _runners(case, "ott_backend")["fwd+bwd"]
  plain_out, backend_out = plain.call(), backend.call()
  np.testing.assert_allclose(plain.summarize(plain_out)[0], backend_out[0][0], rtol=1e-4)
  assert np.shape(plain_out[1]) == backend_out[1].shape
  assert ot_loss_runners.relative_difference(plain_out[1], backend_out[1]) < 1e-4
