"""Ratios, figures and targets of the OT benchmark report, on hand-made measurements."""

import pytest

from mtpkd_jax.bench import ot_report, timing


def _m(case, impl, median_s, direction="fwd+bwd", exps=1e6, times_s=None, exp_rate=5e9, **size):
  return timing.Measurement(
    case=case,
    size=size,
    impl=impl,
    direction=direction,
    times_s=[median_s] if times_s is None else times_s,
    calls_per_sample=1,
    compile_s=None,
    value=0.0,
    iterations=1,
    exps=exps,
    memory_bytes=None,
    memory_kind="",
    median_s=median_s,
    exp_rate=exp_rate,
    bound_fraction=exps / (median_s * exp_rate),
  )


def _results():
  return [
    _m("loss", "fused", 1.0, B=128),
    _m("loss", "ott_plain", 1.5, B=128),
    _m("loss", "geomloss", 4.0, B=128),
    _m("loss", "ott_backend", 2.0, B=128),
    _m("solve", "fused", 0.5, B=128),
    _m("solve", "ott_plain", 1.5, B=128),
    _m("solver", "fused", 0.02, "fwd", exps=6e7, n=512, P=4),
    _m("solver", "ott", 0.018, "fwd", n=512, P=4),
  ]


def test_ratios_to_fused():
  results = _results()
  ot_report.add_ratios(results)
  assert results[1].ratio_to_fused == pytest.approx(1.5)
  assert results[5].ratio_to_fused == pytest.approx(3.0)
  assert results[7].ratio_to_fused == pytest.approx(0.9)


def test_ratios_pair_each_round_with_fused_in_the_same_round():
  # The machine slowed down in round 2 while ott ran, in round 1 while fused ran: each
  # round's ratio is 1.2, 0.5, 1.2 (median 1.2); the medians' ratio would be 1.5 / 2 = 0.75.
  results = [
    _m("solver", "fused", 2.0, "fwd", times_s=[1.0, 3.0, 2.0], n=32, P=1),
    _m("solver", "ott", 1.5, "fwd", times_s=[1.2, 1.5, 2.4], n=32, P=1),
  ]
  ot_report.add_ratios(results)
  assert results[0].ratio_to_fused == pytest.approx(1.0)
  assert results[1].ratio_to_fused == pytest.approx(1.2)


def test_figures_report_end_to_end_and_solve_only_ratios():
  results = _results()
  ot_report.add_ratios(results)
  figures = ot_report.figures(results)
  assert figures["B=128 fwd+bwd end to end: ott_plain / fused"] == "1.50x"
  assert figures["B=128 fwd+bwd solve only: ott_plain / fused"] == "3.00x"
  assert figures["B=128 fwd+bwd end to end: geomloss / fused"] == "4.00x"


def test_targets():
  results = _results()
  ot_report.add_ratios(results)
  targets = ot_report.check_targets(results, [], "cpu")
  every = targets["every row: fused at least as fast as ott-jax"]
  assert not every["met"] and "solver n=512,P=4 ott" in every["measured"]
  assert targets["solver n=512 P=4: fused >= 50% of exp bound"]["met"]  # 60 %.
  assert targets["loss B=128 fwd+bwd: fused >= 3x geomloss"]["met"]
  assert not any("3x ott_plain" in name for name in targets)  # Withdrawn as a CPU target.
  assert not any("10x" in name for name in targets)  # Accelerators only.
  results[7].median_s, results[7].times_s = 0.03, [0.03]
  results[6].bound_fraction = 0.45
  ot_report.add_ratios(results)
  targets = ot_report.check_targets(results, [], "gpu")
  assert targets["every row: fused at least as fast as ott-jax"]["met"]
  assert not targets["solver n=512 P=4: fused >= 50% of exp bound"]["met"]  # 45 %.
  assert targets["gpu: loss fwd+bwd B<=512, fused >= 10x ott_plain"]["measured"] == "1.5x"
