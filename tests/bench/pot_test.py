"""The shared POT reference against closed forms."""

import numpy as np
import pytest

from mtpkd_jax.bench import pot

pytest.importorskip("ot")


def test_constant_cost_gives_the_independent_plan():
  # C = c: the optimal plan is a ⊗ b, KL = 0, so value = linear = c.
  a, b = np.array([0.2, 0.8]), np.array([0.5, 0.25, 0.25])
  out = pot.entropic_ot(np.full((2, 3), 1.5), 0.3, a, b)
  assert out.value == pytest.approx(1.5) and out.linear == pytest.approx(1.5)
  assert out.iterations >= 1


def test_two_points_value_matches_the_closed_form():
  # Two points each side, uniform, C = [[0, 1], [1, 0]]: the plan is [[p, q], [q, p]] / 2 with
  # p / q = exp(1 / eps), and the KL-convention value is <π, C> + eps KL(π | a ⊗ b).
  eps = 0.5
  p = 1.0 / (1.0 + np.exp(-1.0 / eps))
  plan = np.array([[p, 1 - p], [1 - p, p]]) / 2
  linear = 1 - p
  value = linear + eps * np.sum(plan * np.log(plan / 0.25))
  out = pot.entropic_ot(np.array([[0.0, 1.0], [1.0, 0.0]]), eps)
  assert out.linear == pytest.approx(linear, rel=1e-9)
  assert out.value == pytest.approx(value, rel=1e-9)
