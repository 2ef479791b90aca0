"""Tests for mtpkd_jax.models.heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import heads


def _init(module, x):
  return module.init(jax.random.key(0), x)


@pytest.mark.parametrize(
  "features, hidden, out", [(None, (32,), 16), (8, (32, 24), 8), (None, (), 16)]
)
def test_tnet_shapes(features, hidden, out):
  module = heads.TNet(features=features, hidden_features=hidden)
  x = jnp.ones((3, 16))
  variables = _init(module, x)
  assert module.apply(variables, x).shape == (3, out)
  widths = [p["kernel"].shape[1] for p in variables["params"].values()]
  assert widths == [*hidden, out]


def test_tnet_is_nonlinear():
  module = heads.TNet(hidden_features=(32,))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16)), jnp.float32)
  variables = _init(module, x)
  zero = module.apply(variables, jnp.zeros_like(x))
  assert not np.allclose(module.apply(variables, -x) - zero, -(module.apply(variables, x) - zero))


def test_adapter_is_a_linear_bottleneck():
  module = heads.Adapter()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16)), jnp.float32)
  variables = _init(module, x)
  params = variables["params"]
  assert params["down"]["kernel"].shape == (16, 8)
  assert params["up"]["kernel"].shape == (8, 16)

  def adapt(v):
    return module.apply(variables, v)

  zero = adapt(jnp.zeros_like(x))
  np.testing.assert_allclose(adapt(-2.0 * x) - zero, -2.0 * (adapt(x) - zero), atol=1e-5)


def test_head_shape():
  module = heads.Head(num_outputs=5)
  x = jnp.ones((3, 16))
  assert module.apply(_init(module, x), x).shape == (3, 5)


@pytest.mark.parametrize(
  "module",
  [heads.TNet(dtype=jnp.bfloat16), heads.Adapter(jnp.bfloat16), heads.Head(2, jnp.bfloat16)],
)
def test_bfloat16_compute_with_float32_params(module):
  x = jax.ShapeDtypeStruct((2, 16), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert jax.eval_shape(module.apply, variables, x).dtype == jnp.bfloat16
