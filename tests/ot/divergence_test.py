"""Tests of debiased Sinkhorn divergences on both backends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.ot import divergence, schedules
from tests.ot import references


def _clouds(seed, p=2, n=10, m=10, d=4, shift=1.0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(p, n, d)), rng.normal(size=(p, m, d)) + shift


@pytest.mark.parametrize("blur,scaling", [(0.1, 0.5), (0.3, 0.8)])
@pytest.mark.parametrize("debias", [True, False])
def test_anneal_equals_numpy_transcription_of_geomloss(blur, scaling, debias):
  x, y = _clouds(0, n=9, m=11)
  schedule = schedules.Anneal(blur=blur, scaling=scaling)
  with jax.enable_x64(True):
    out = divergence.sinkhorn_divergence(
      jnp.asarray(x), jnp.asarray(y), schedule=schedule, debias=debias
    )
  for p in range(2):
    want, steps = references.geomloss_sinkhorn(x[p], y[p], blur, scaling, debias=debias)
    np.testing.assert_allclose(out.value[p], want, rtol=1e-10)
    assert int(out.iterations[p]) == steps


def test_debiased_divergence_of_a_cloud_with_itself_is_zero():
  x, _ = _clouds(1)
  for schedule in (schedules.Anneal(), schedules.Tolerance(epsilon=0.2)):
    out = divergence.sinkhorn_divergence(jnp.asarray(x), jnp.asarray(x), schedule=schedule)
    np.testing.assert_allclose(out.value, 0.0, atol=1e-5)


@pytest.mark.parametrize("shift", [0.5, 4.0])
def test_backends_agree_at_convergence(shift):
  x, y = _clouds(2, n=12, m=12, shift=shift)
  schedule = schedules.Tolerance(threshold=1e-8, max_iterations=20_000, epsilon=0.4)
  with jax.enable_x64(True):
    fused = divergence.sinkhorn_divergence(jnp.asarray(x), jnp.asarray(y), schedule=schedule)
    ott = divergence.sinkhorn_divergence(
      jnp.asarray(x), jnp.asarray(y), schedule=schedule, backend="ott"
    )
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
    fused = divergence.sinkhorn_divergence(*args, schedule=schedule)
    ott = divergence.sinkhorn_divergence(*args, schedule=schedule, backend="ott")
  np.testing.assert_allclose(fused.value, ott.value, rtol=1e-5)


def test_ott_anneal_converges_to_fused_tolerance_at_blur_squared():
  x, y = _clouds(4)
  with jax.enable_x64(True):
    ott = divergence.sinkhorn_divergence(
      jnp.asarray(x),
      jnp.asarray(y),
      schedule=schedules.Anneal(blur=0.3, threshold=1e-9, max_iterations=5000),
      backend="ott",
    )
    fused = divergence.sinkhorn_divergence(
      jnp.asarray(x),
      jnp.asarray(y),
      schedule=schedules.Tolerance(threshold=1e-9, max_iterations=5000, epsilon=0.09),
    )
  np.testing.assert_allclose(ott.value, fused.value, rtol=1e-5)


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
