"""Tests for mtpkd_jax.models.mlp."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import mlp

FEATURES, D_IN = 6, 5


def _reference(params, x, num_layers):
  """ReLU hidden layers, then a linear one; one token per sample."""
  for i in range(1, num_layers + 1):
    layer = params[f"dense{i}"]
    x = x @ layer["kernel"] + layer["bias"]
    if i < num_layers:
      x = jax.nn.relu(x)
  return x[:, None, :]


@pytest.mark.parametrize("num_layers", [1, 3])
def test_matches_reference_values_and_gradients(num_layers, random_variables):
  rng = np.random.default_rng(0)
  module = mlp.MLPEncoder(features=FEATURES, hidden=7, num_layers=num_layers)
  x = jnp.asarray(rng.normal(size=(4, D_IN)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(4, 1, FEATURES)), jnp.float32)
  params = random_variables(module, x)["params"]
  out = module.apply({"params": params}, x, jnp.zeros((4, 3), bool))  # The mask is ignored.
  assert out.shape == (4, 1, FEATURES)
  np.testing.assert_allclose(out, _reference(params, x, num_layers), atol=1e-6, rtol=1e-6)

  def loss(fn, params, x):
    return jnp.sum(fn(params, x) * weights)

  grads = jax.grad(functools.partial(loss, lambda p, x: module.apply({"params": p}, x)), (0, 1))
  expected = jax.grad(functools.partial(loss, lambda p, x: _reference(p, x, num_layers)), (0, 1))
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, atol=1e-5, rtol=1e-5),
    grads(params, x),
    expected(params, x),
  )


def test_output_independent_of_batch_mates(assert_batch_independent, random_variables):
  rng = np.random.default_rng(1)
  module = mlp.MLPEncoder(features=FEATURES)
  batch_a, batch_b = (jnp.asarray(rng.normal(size=(3, D_IN)), jnp.float32) for _ in range(2))
  apply = functools.partial(module.apply, random_variables(module, batch_a))
  assert_batch_independent(apply, batch_a, batch_b)


def test_dropout_only_in_train_mode(random_variables):
  module = mlp.MLPEncoder(features=FEATURES, dropout_rate=0.5)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, D_IN)), jnp.float32)
  variables = random_variables(module, x)
  np.testing.assert_array_equal(module.apply(variables, x), module.apply(variables, x))
  train_a, train_b = (
    module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(k)}) for k in (1, 2)
  )
  assert not np.allclose(train_a, train_b)


def test_bfloat16_compute_with_float32_params():
  module = mlp.MLPEncoder(features=FEATURES, dtype=jnp.bfloat16)
  x = jnp.ones((2, D_IN))
  variables = module.init(jax.random.key(0), x)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out = module.apply(variables, x)
  assert (out.shape, out.dtype) == ((2, 1, FEATURES), jnp.bfloat16)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="x must be a vector batch"):
    mlp.MLPEncoder(features=FEATURES).init(jax.random.key(0), jnp.ones((2, 3, D_IN)))
  with pytest.raises(ValueError, match="num_layers must be at least 1"):
    mlp.MLPEncoder(features=FEATURES, num_layers=0).init(jax.random.key(0), jnp.ones((2, D_IN)))
