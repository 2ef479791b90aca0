"""Tests of debiased Sinkhorn divergences on both backends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.ot import divergence, schedules
from tests.ot import references

# Jitted, as users call it: one compiled program per test instead of one per operation.
_divergence = jax.jit(
  divergence.sinkhorn_divergence,
  static_argnames=("schedule", "backend", "gradient", "debias", "max_diameter"),
)


def _clouds(seed, p=2, n=10, m=10, d=4, shift=1.0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(p, n, d)), rng.normal(size=(p, m, d)) + shift


def _structured_clouds(seed, structure, p=2, n=24, m=20, d=6):
  """``weak``: correlated clouds; ``strong``: both drawn around the same 4 tight clusters."""
  rng = np.random.default_rng(seed)
  if structure == "weak":
    x = rng.normal(size=(p, n, d))
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return x, 0.3 * x[:, :m] @ mix + 0.5 * rng.normal(size=(p, m, d))
  centres = 3.0 * rng.normal(size=(4, d))
  x = centres[rng.integers(4, size=(p, n))] + 0.1 * rng.normal(size=(p, n, d))
  return x, centres[rng.integers(4, size=(p, m))] + 0.1 * rng.normal(size=(p, m, d))


def _envelope_reference(x, y, eps):
  """Envelope gradients from POT's converged plans: ``dS/dx_i = Σ_j π_ij (x_i - y_j) - ...``."""
  import ot

  def plan(u, v):
    w_u, w_v = np.full(len(u), 1 / len(u)), np.full(len(v), 1 / len(v))
    cost = references.half_sq_dist(u, v)
    return ot.sinkhorn(w_u, w_v, cost, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=10**5)

  def pull(u, v, pi):  # Σ_j π_ij (u_i - v_j)
    return pi.sum(1)[:, None] * u - pi @ v

  pi_xy, pi_xx, pi_yy = plan(x, y), plan(x, x), plan(y, y)
  return pull(x, y, pi_xy) - pull(x, x, pi_xx), pull(y, x, pi_xy.T) - pull(y, y, pi_yy)


@pytest.mark.parametrize("blur,scaling", [(0.1, 0.5), (0.3, 0.8)])
@pytest.mark.parametrize("debias", [True, False])
def test_anneal_equals_numpy_transcription_of_geomloss(blur, scaling, debias):
  x, y = _clouds(0, n=9, m=11)
  schedule = schedules.Anneal(blur=blur, scaling=scaling)
  with jax.enable_x64(True):
    out = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule, debias=debias)
  for p in range(2):
    want, steps, _, _, error = references.geomloss_sinkhorn(x[p], y[p], blur, scaling, debias)
    np.testing.assert_allclose(out.value[p], want, rtol=1e-10)
    assert int(out.iterations[p]) == steps
    # A fixed schedule: its last iterate's error is reported, far above the threshold.
    np.testing.assert_allclose(out.marginal_error[p], error, rtol=1e-8)
    assert error > 100 * schedule.threshold
    assert not out.converged[p]


def test_anneal_runs_schedules_longer_than_max_iterations_to_their_end():
  # blur = 0.01, scaling = 0.95: GeomLoss's schedule has 143 steps, the scan's length is 100.
  rng = np.random.default_rng(10)
  x, y = 2 * rng.normal(size=(1, 30, 3)), 2 * rng.normal(size=(1, 30, 3)) + 1
  schedule = schedules.Anneal(blur=0.01, scaling=0.95)
  want, steps, want_x, want_y, _ = references.geomloss_sinkhorn(x[0], y[0], 0.01, 0.95)
  assert steps > schedule.max_iterations
  with jax.enable_x64(True):
    value, grads = _value_and_grads(x, y, schedule)
    out = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule)
    unrolled = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule, gradient="unrolled")
  np.testing.assert_allclose(value, want, rtol=1e-10)
  _assert_grads_close((grads[0][0], grads[1][0]), (want_x, want_y), rtol=1e-6)
  assert int(out.iterations[0]) == steps
  # The unrolled gradient's static scan truncates the schedule, and its output says so.
  assert int(unrolled.iterations[0]) == schedule.max_iterations


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_diameter_bound_changes_nothing_below_it_and_caps_the_schedule_above(scale):
  # Clouds of diameters 8.1 and 3.8, whose schedules have 9 and 8 steps. A bound of 1.01
  # times the wider: 9 steps, the second problem's last masked, GeomLoss's values and
  # iterations. Half of that: the wider pair anneals from the bound (8 steps), as GeomLoss
  # would with that diameter; the other, narrower than the bound, is unchanged.
  x, y = _clouds(0, n=9, m=11)
  x[1], y[1] = 0.5 * x[1], 0.5 * y[1]
  diameters = [np.linalg.norm(np.ptp(np.concatenate([x[p], y[p]]), axis=0)) for p in range(2)]
  bound = scale * 1.01 * max(diameters)
  blur, scaling = 0.1, 0.5
  schedule = schedules.Anneal(blur=blur, scaling=scaling)
  with jax.enable_x64(True):
    out = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule, max_diameter=bound)
  want = [
    references.geomloss_sinkhorn(x[p], y[p], blur, scaling, diameter=min(bound, diameters[p]))
    for p in range(2)
  ]
  np.testing.assert_allclose(out.value, [w[0] for w in want], rtol=1e-10)
  assert [int(i) for i in out.iterations] == [w[1] for w in want] == [9 if scale == 1 else 8, 8]


def test_a_non_positive_diameter_bound_raises():
  x, y = _clouds(0)
  with pytest.raises(ValueError, match="max_diameter"):
    divergence.sinkhorn_divergence(jnp.asarray(x), jnp.asarray(y), max_diameter=0.0)


def _value_and_grads(x, y, schedule, debias=True):
  def total(x, y):
    return jnp.sum(divergence.sinkhorn_divergence(x, y, schedule=schedule, debias=debias).value)

  return jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(y))


def _assert_grads_close(got, want, rtol):
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(np.linalg.norm(g), np.linalg.norm(w), rtol=rtol)
    np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


@pytest.mark.parametrize("structure", ["weak", "strong"])
@pytest.mark.parametrize("blur,scaling", [(0.1, 0.5), (0.3, 0.8)])
@pytest.mark.parametrize("debias", [True, False])
def test_anneal_gradient_equals_geomloss_last_extrapolation(structure, blur, scaling, debias):
  x, y = _structured_clouds(5, structure)
  with jax.enable_x64(True):
    _, grads = _value_and_grads(x, y, schedules.Anneal(blur=blur, scaling=scaling), debias)
  for p in range(2):
    _, _, want_x, want_y, _ = references.geomloss_sinkhorn(x[p], y[p], blur, scaling, debias)
    _assert_grads_close((grads[0][p], grads[1][p]), (want_x, want_y), rtol=1e-6)


@pytest.mark.parametrize(
  "schedule",
  [
    schedules.Fixed(iterations=2000, epsilon=0.5),
    schedules.Tolerance(threshold=1e-10, max_iterations=50_000, epsilon=0.5),
  ],
  ids=["fixed", "tolerance"],
)
@pytest.mark.parametrize("structure", ["weak", "strong"])
def test_constant_epsilon_gradient_is_the_envelope_of_pot_plans(schedule, structure):
  x, y = _structured_clouds(6, structure)
  with jax.enable_x64(True):
    _, grads = _value_and_grads(x, y, schedule)
  for p in range(2):
    want = _envelope_reference(x[p], y[p], schedule.epsilon)
    _assert_grads_close((grads[0][p], grads[1][p]), want, rtol=1e-6)


def test_float32_anneal_gradient_is_close_to_geomloss():
  x, y = _structured_clouds(7, "weak", p=1, n=64, m=64, d=16)
  _, grads = _value_and_grads(x.astype(np.float32), y.astype(np.float32), schedules.Anneal())
  _, _, want_x, want_y, _ = references.geomloss_sinkhorn(x[0], y[0], 0.1, 0.5)
  _assert_grads_close((grads[0][0], grads[1][0]), (want_x, want_y), rtol=1e-3)


@pytest.mark.parametrize("size", [0.002, 0.011])
def test_anneal_on_clouds_narrower_than_blur_starts_at_their_diameter(size):
  x, y = _clouds(8, n=9, m=7, d=3)
  x, y = size * x, size * y
  with jax.enable_x64(True):
    value, grads = _value_and_grads(x, y, schedules.Anneal(blur=0.1))
  want = [references.geomloss_sinkhorn(x[p], y[p], 0.1, 0.5) for p in range(2)]
  assert all(w[1] == 2 for w in want)
  np.testing.assert_allclose(value, sum(w[0] for w in want), rtol=1e-9)
  for p in range(2):
    _assert_grads_close((grads[0][p], grads[1][p]), want[p][2:4], rtol=1e-6)


def test_tolerance_stops_only_once_the_debiasing_terms_meet_the_threshold():
  # A tight cloud against a spread one: OT(a, b) and the tight cloud's own term converge
  # within a few iterations, the spread cloud's own term last (OT(a, a) in problem 0,
  # OT(b, b) in problem 1).
  rng = np.random.default_rng(9)
  spread, tight = rng.normal(size=(12, 2)), 1e-3 * rng.normal(size=(12, 2)) + 0.5
  x, y = np.stack([spread, tight]), np.stack([tight, spread])
  eps, threshold = 0.5, 1e-9
  schedule = schedules.Tolerance(threshold=threshold, max_iterations=1000, epsilon=eps)
  with jax.enable_x64(True):
    out = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule)
  w = np.full(12, 1 / 12)
  for p, slowest in ((0, "xx"), (1, "yy")):
    errors = {
      term: references.sinkhorn_marginal_errors(
        references.half_sq_dist(u, v), w, w, eps, 60, symmetric=term != "xy"
      )
      for term, (u, v) in {"xy": (x[p], y[p]), "xx": (x[p], x[p]), "yy": (y[p], y[p])}.items()
    }
    assert all(np.any(e <= threshold) for e in errors.values())
    first = {term: int(np.argmax(e <= threshold)) for term, e in errors.items()}
    assert first[slowest] > 3 * max(i for term, i in first.items() if term != slowest)
    # The loop stops after the iteration that measured the last term's error under the
    # threshold, and reports the error of the iterate that iteration made.
    assert int(out.iterations[p]) == first[slowest] + 1
    want = max(e[first[slowest] + 1] for e in errors.values())
    np.testing.assert_allclose(out.marginal_error[p], want, rtol=1e-5)
    assert out.converged[p]


def test_debiased_divergence_of_a_cloud_with_itself_is_zero():
  x, _ = _clouds(1)
  for schedule in (schedules.Anneal(), schedules.Tolerance(epsilon=0.2)):
    out = _divergence(jnp.asarray(x), jnp.asarray(x), schedule=schedule)
    np.testing.assert_allclose(out.value, 0.0, atol=1e-5)


@pytest.mark.parametrize("shift", [0.5, 4.0])
def test_backends_agree_at_convergence(shift):
  x, y = _clouds(2, n=12, m=12, shift=shift)
  schedule = schedules.Tolerance(threshold=1e-8, max_iterations=20_000, epsilon=0.4)
  with jax.enable_x64(True):
    fused = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule)
    ott = _divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule, backend="ott")
  np.testing.assert_allclose(fused.value, ott.value, rtol=1e-5)
  np.testing.assert_allclose(fused.ot, ott.ot, rtol=1e-5)
  assert np.all(fused.converged)


def test_backends_agree_for_unequal_cloud_sizes_and_given_weights():
  x, y = _clouds(3, n=7, m=13)
  rng = np.random.default_rng(3)
  a = rng.uniform(1, 2, (2, 7))
  b = rng.uniform(1, 2, (2, 13))
  a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
  schedule = schedules.Tolerance(threshold=1e-8, max_iterations=20_000, epsilon=0.5)
  with jax.enable_x64(True):
    args = [jnp.asarray(v) for v in (x, y, a, b)]
    fused = _divergence(*args, schedule=schedule)
    ott = _divergence(*args, schedule=schedule, backend="ott")
  np.testing.assert_allclose(fused.value, ott.value, rtol=1e-5)


def test_ott_backend_refuses_anneal_rather_than_change_the_objective():
  x, y = _clouds(4)
  with pytest.raises(ValueError, match="Anneal"):
    divergence.sinkhorn_divergence(
      jnp.asarray(x), jnp.asarray(y), schedule=schedules.Anneal(), backend="ott"
    )


def test_bounding_diameter_is_joint_box_diagonal():
  x = jnp.array([[[0.0, 0.0], [1.0, 0.0]]])
  y = jnp.array([[[0.0, 2.0], [0.5, 1.0]]])
  np.testing.assert_allclose(divergence.bounding_diameter(x, y), [np.sqrt(5.0)], rtol=1e-6)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="shape"):
    divergence.sinkhorn_divergence(jnp.ones((3, 2)), jnp.ones((3, 2)))
  with pytest.raises(ValueError, match="dimension"):
    divergence.sinkhorn_divergence(jnp.ones((1, 3, 2)), jnp.ones((1, 3, 4)))
  with pytest.raises(ValueError, match="backend"):
    divergence.sinkhorn_divergence(jnp.ones((1, 3, 2)), jnp.ones((1, 3, 2)), backend="pot")
