"""Tests for mtpkd_jax.losses.alignment against NumPy references written here."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.losses import alignment

RIDGE = 1e-3


def _np_covariances(x, y, ridge):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  x_c, y_c = x - x.mean(0), y - y.mean(0)
  m = len(x) - 1
  s11 = x_c.T @ x_c / m + ridge * np.eye(x.shape[1])
  s22 = y_c.T @ y_c / m + ridge * np.eye(y.shape[1])
  return x_c, y_c, s11, s22, x_c.T @ y_c / m


def _np_inverse_sqrt(s):
  w, v = np.linalg.eigh(s)
  return (v / np.sqrt(w)) @ v.T


def _np_canonical_correlations(x, y, ridge=RIDGE):
  """Singular values of the whitened cross-covariance `S11^{-1/2} S12 S22^{-1/2}`."""
  _, _, s11, s22, s12 = _np_covariances(x, y, ridge)
  return np.linalg.svd(_np_inverse_sqrt(s11) @ s12 @ _np_inverse_sqrt(s22), compute_uv=False)


def _np_dcca_gradient(x, y, ridge=RIDGE):
  """Andrew et al. (2013)'s closed-form gradient of the total correlation w.r.t. `x`, negated."""
  x_c, y_c, s11, s22, s12 = _np_covariances(x, y, ridge)
  k11, k22 = _np_inverse_sqrt(s11), _np_inverse_sqrt(s22)
  u, d, vt = np.linalg.svd(k11 @ s12 @ k22, full_matrices=False)
  delta12 = k11 @ u @ vt @ k22
  delta11 = -0.5 * k11 @ u @ np.diag(d) @ u.T @ k11
  return -(2 * x_c @ delta11 + y_c @ delta12.T) / (len(x) - 1)


def _correlated(rng, batch=32, d1=5, d2=4):
  """`x` `[batch, d1]` and `y` `[batch, d2]`, `y` a noisy linear map of part of `x`."""
  x = rng.normal(size=(batch, d1))
  shared = min(d1, d2)
  y = x[:, :shared] @ rng.normal(size=(shared, d2)) + 0.7 * rng.normal(size=(batch, d2))
  return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


value_and_grads = jax.jit(
  jax.value_and_grad(alignment.deep_cca, argnums=(0, 1)), static_argnames="ridge"
)


@pytest.mark.parametrize("shape", [(32, 5, 4), (16, 3, 6), (40, 6, 6)])
def test_dcca_matches_numpy_reference(shape):
  rng = np.random.default_rng(0)
  x, y = _correlated(rng, *shape)
  correlations = _np_canonical_correlations(x, y)
  assert correlations.max() > 0.5  # Real correlations, not only noise.
  value, (grad_x, grad_y) = value_and_grads(x, y)
  np.testing.assert_allclose(value, -correlations.sum(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad_x, _np_dcca_gradient(x, y), rtol=1e-3, atol=1e-5)
  np.testing.assert_array_equal(grad_y, 0.0)


def test_dcca_gradient_matches_finite_differences_of_the_reference():
  rng = np.random.default_rng(1)
  x, y = _correlated(rng, batch=20, d1=4, d2=3)
  _, (grad_x, _) = value_and_grads(x, y)
  x64 = np.asarray(x, np.float64)
  for _ in range(3):
    direction = rng.normal(size=x.shape)
    h = 1e-5
    numeric = (
      _np_canonical_correlations(x64 - h * direction, y).sum()
      - _np_canonical_correlations(x64 + h * direction, y).sum()
    ) / (2 * h)
    np.testing.assert_allclose(
      np.sum(np.asarray(grad_x, np.float64) * direction), numeric, rtol=1e-3
    )


def test_dcca_ridge_is_added_to_each_covariance():
  rng = np.random.default_rng(2)
  x, y = _correlated(rng, batch=12, d1=3, d2=3)
  for ridge in (1e-2, 1.0):
    np.testing.assert_allclose(
      alignment.deep_cca(x, y, ridge=ridge),
      -_np_canonical_correlations(x, y, ridge).sum(),
      rtol=1e-5,
    )


def test_dcca_of_linearly_related_batches_is_close_to_minus_the_width():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
  y = x @ jnp.asarray(rng.normal(size=(4, 4)), jnp.float32) + 3.0
  value = alignment.deep_cca(x, y, ridge=1e-6)
  assert -4.0 <= value < -4.0 + 1e-3


@pytest.mark.parametrize(
  "case",
  [
    "constant",
    "zeros",
    "batch_below_width",
    "duplicate_columns",
    "constant_teacher",
    "constant_student",
    "two_rows",
  ],
)
def test_dcca_finite_for_degenerate_batches(case):
  rng = np.random.default_rng(4)
  x, y = (np.asarray(a) for a in _correlated(rng, batch=16, d1=6, d2=6))
  if case == "constant":
    x, y = np.tile(x[:1], (16, 1)), np.tile(y[:1], (16, 1))
  elif case == "zeros":
    x, y = np.zeros_like(x), np.zeros_like(y)
  elif case == "batch_below_width":
    x, y = x[:3], y[:3]
  elif case == "duplicate_columns":
    x = np.repeat(x[:, :2], 3, axis=1)
    y = np.repeat(y[:, :1], 6, axis=1)
  elif case == "constant_teacher":
    y = np.tile(y[:1], (16, 1))
  elif case == "constant_student":
    x = np.tile(x[:1], (16, 1))
  else:
    x, y = x[:2], y[:2]
  value, (grad_x, _) = value_and_grads(jnp.asarray(x), jnp.asarray(y))
  assert np.isfinite(value) and np.all(np.isfinite(grad_x)), case
  np.testing.assert_allclose(value, -_np_canonical_correlations(x, y).sum(), rtol=1e-4, atol=1e-4)
  if case in ("constant", "zeros", "constant_teacher"):
    # No variance, no correlation, and no direction to improve it.
    np.testing.assert_allclose(value, 0.0, atol=1e-6)
    np.testing.assert_allclose(grad_x, 0.0, atol=1e-6)
  else:
    # A collapsed student still gets a (sub)gradient towards the teacher's directions.
    assert np.any(grad_x != 0.0)
    step = jnp.asarray(x) - 0.1 * grad_x / np.abs(grad_x).max()
    assert alignment.deep_cca(step, jnp.asarray(y)) < value


def test_dcca_repeated_canonical_correlations_have_a_finite_gradient():
  """A whitened batch against itself (rotated): every canonical correlation is `1 / (1 + r)`.

  Autodiff through an SVD (or `eigh`) divides by the gaps between them, which are zero here.
  """
  rng = np.random.default_rng(5)
  batch, width = 24, 3
  q, _ = np.linalg.qr(rng.normal(size=(batch, width)) - 0.0)
  q = q - q.mean(0)
  x = q @ np.linalg.inv(np.linalg.cholesky(q.T @ q / (batch - 1))).T  # x_c^T x_c / (B-1) = I.
  rotation, _ = np.linalg.qr(rng.normal(size=(width, width)))
  for y in (x, x @ rotation):
    value, (grad_x, _) = value_and_grads(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    assert np.all(np.isfinite(grad_x))
    np.testing.assert_allclose(value, -width / (1 + RIDGE), rtol=1e-5)
    np.testing.assert_allclose(grad_x, _np_dcca_gradient(x, y), rtol=1e-3, atol=1e-5)


def _np_cosine(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  cos = np.sum(x * y, 1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
  return np.mean(1.0 - cos)


@pytest.mark.parametrize(
  ("kind", "params", "reference"),
  [
    ("dcca", {}, lambda x, y: -_np_canonical_correlations(x, y).sum()),
    ("dcca", {"ridge": 0.1}, lambda x, y: -_np_canonical_correlations(x, y, 0.1).sum()),
    ("cosine", {}, _np_cosine),
    ("mse", {}, lambda x, y: np.mean((np.float64(x) - np.float64(y)) ** 2)),
  ],
)
def test_alignment_loss_by_name(kind, params, reference):
  x, y = _correlated(np.random.default_rng(6), batch=10, d1=4, d2=4)
  loss = jax.jit(functools.partial(alignment.alignment_loss, kind=kind, **params))
  np.testing.assert_allclose(loss(x, y), reference(x, y), rtol=1e-5)
  grad_x, grad_y = jax.grad(loss, argnums=(0, 1))(x, y)
  assert np.any(grad_x != 0.0)
  np.testing.assert_array_equal(grad_y, 0.0)


@pytest.mark.parametrize(
  ("call", "message"),
  [
    (lambda: alignment.alignment_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), "cca"), "`kind`"),
    (
      lambda: alignment.alignment_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), "mse", ridge=1.0),
      "'mse' alignment takes no parameters",
    ),
    (lambda: alignment.alignment_loss(jnp.zeros((4, 3)), jnp.zeros((4, 2)), "cosine"), "`z_s`"),
    (lambda: alignment.deep_cca(jnp.zeros((4, 3)), jnp.zeros((5, 3))), "batch size"),
    (lambda: alignment.deep_cca(jnp.zeros((1, 3)), jnp.zeros((1, 3))), "at least 2"),
    (lambda: alignment.deep_cca(jnp.zeros((4, 3)), jnp.zeros((4, 3)), ridge=0.0), "`ridge`"),
    (lambda: alignment.mse(jnp.zeros((4, 3)), jnp.zeros((4, 2))), "`x` and `y`"),
  ],
)
def test_errors_name_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()
