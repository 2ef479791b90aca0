"""Tests for mtpkd_jax.losses.translation against a NumPy reference written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.losses import translation

LENGTHS = (6, 2, 0, 4)
STEPS, FEATURES = 6, 3


def _np_translation(decoded, target, lengths, kind):
  """The mean error over the valid steps, step by step."""
  errors = []
  for b, n in enumerate(lengths):
    for t in range(n):
      diff = np.float64(decoded[b, t]) - np.float64(target[b, t])
      errors.append(np.abs(diff) if kind == "l1" else diff**2)
  return np.mean(errors) if errors else 0.0


def _batch(rng):
  mask = np.arange(STEPS)[None, :] < np.asarray(LENGTHS)[:, None]
  decoded = rng.normal(size=(len(LENGTHS), STEPS, FEATURES))
  target = rng.normal(size=decoded.shape)
  # Padding holds garbage, NaN and inf on both sides.
  decoded[~mask], target[~mask] = 1e4, np.nan
  decoded[1, -1, 0] = np.inf
  return (jnp.asarray(a, jnp.float32) for a in (decoded, target)), jnp.asarray(mask)


loss_and_grads = jax.jit(
  jax.value_and_grad(translation.translation_loss, argnums=(0, 1)), static_argnames="kind"
)


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_matches_numpy_and_ignores_padding(kind):
  rng = np.random.default_rng(0)
  (decoded, target), mask = _batch(rng)
  value, (grad, grad_target) = loss_and_grads(decoded, target, mask, kind=kind)
  np.testing.assert_allclose(value, _np_translation(decoded, target, LENGTHS, kind), rtol=1e-6)
  # Closed-form gradient: sign(diff) or 2 diff, over the number of valid entries.
  count = sum(LENGTHS) * FEATURES
  diff = np.where(mask[..., None], np.asarray(decoded) - np.asarray(target), 0.0)
  expected = (np.sign(diff) if kind == "l1" else 2 * diff) / count
  np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)
  np.testing.assert_array_equal(grad_target, 0.0)


def test_no_mask_is_every_step_valid():
  rng = np.random.default_rng(1)
  decoded, target = (jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32) for _ in range(2))
  full = (4, 4, 4)
  for kind in ("l1", "mse"):
    np.testing.assert_allclose(
      translation.translation_loss(decoded, target, kind=kind),
      _np_translation(decoded, target, full, kind),
      rtol=1e-6,
    )


def test_empty_batch_is_zero_with_zero_gradient():
  (decoded, target), mask = _batch(np.random.default_rng(2))
  value, (grad, _) = loss_and_grads(decoded, target, jnp.zeros_like(mask), kind="mse")
  assert value == 0.0
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize(
  ("call", "message"),
  [
    (
      lambda: translation.translation_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), kind="l2"),
      "`kind`",
    ),
    (
      lambda: translation.translation_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3))),
      "`decoded` must have rank 3",
    ),
    (lambda: translation.translation_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5))), "`target`"),
    (
      lambda: translation.translation_loss(
        jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.ones((2, 4), bool)
      ),
      r"`mask` must have `decoded`'s \[batch, steps\] shape",
    ),
  ],
)
def test_errors_name_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()
