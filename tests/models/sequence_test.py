"""Tests for mtpkd_jax.models.sequence (and the key-padding mask of transformer.EncoderBlock)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import sequence

FEATURES, D_IN, STEPS = 8, 5, 7
LENGTHS = (7, 3, 0)  # A full row, a padded one, an all-padding one.

ENCODERS = {
  "transformer": functools.partial(sequence.TransformerEncoder, num_heads=2),
  "bigru": functools.partial(sequence.BiGRUEncoder, hidden=4),
  "gru_transformer": functools.partial(
    sequence.GRUTransformerEncoder, hidden=4, num_layers=1, num_heads=2
  ),
}


def _encoder(name, **kwargs):
  return ENCODERS[name](features=FEATURES, dropout_rate=kwargs.pop("dropout_rate", 0.0), **kwargs)


def _mask(lengths, steps=STEPS):
  return jnp.asarray(np.arange(steps)[None, :] < np.asarray(lengths)[:, None])


def _padded(rng, lengths=LENGTHS, steps=STEPS):
  """Random valid steps and garbage padding (huge values, NaN, inf); and the mask."""
  x = rng.normal(size=(len(lengths), steps, D_IN))
  mask = np.asarray(_mask(lengths, steps))
  x[~mask] = 1e4 * rng.normal(size=x[~mask].shape)
  for b, n in enumerate(lengths):
    if n < steps:
      x[b, n, 0], x[b, -1, 1] = np.nan, np.inf
  return jnp.asarray(x, jnp.float32), jnp.asarray(mask)


def _outputs(module):
  """Jitted `(variables, x, mask, w) -> (pooled, steps, grads)`, the gradients of
  `sum(pooled * w)` with respect to `(variables, x)`."""

  def loss(variables, x, mask, w):
    return jnp.sum(module.apply(variables, x, mask) * w)

  @jax.jit
  def outputs(variables, x, mask, w):
    pooled = module.apply(variables, x, mask)
    steps = module.apply(variables, x, mask, method="sequence")
    return pooled, steps, jax.grad(loss, argnums=(0, 1))(variables, x, mask, w)

  return outputs


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_padding_changes_nothing_in_eval(name, random_variables):
  rng = np.random.default_rng(0)
  module = _encoder(name)
  x, mask = _padded(rng)
  variables = random_variables(module, x, mask)
  weights = jnp.asarray(rng.normal(size=(len(LENGTHS), 1, FEATURES)), jnp.float32)
  outputs = _outputs(module)

  pooled, steps, grads = outputs(variables, x, mask, weights)
  param_grads = jax.tree.map(jnp.zeros_like, variables)
  for b, n in enumerate(LENGTHS):
    np.testing.assert_array_equal(steps[b, n:], 0.0)
    np.testing.assert_array_equal(grads[1][b, n:], 0.0)
    if n == 0:
      np.testing.assert_array_equal(pooled[b], 0.0)
      continue
    # The same sample, unpadded and without a mask.
    alone_pooled, alone_steps, alone_grads = outputs(
      variables, x[b : b + 1, :n], None, weights[b : b + 1]
    )
    np.testing.assert_allclose(steps[b, :n], alone_steps[0], atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(pooled[b], alone_pooled[0], atol=1e-6, rtol=1e-6)
    # Pooling: the NumPy mean of the valid steps.
    np.testing.assert_allclose(
      pooled[b, 0], np.asarray(alone_steps[0], np.float64).mean(0), atol=1e-6, rtol=1e-6
    )
    np.testing.assert_allclose(grads[1][b, :n], alone_grads[1][0], atol=1e-6, rtol=1e-5)
    param_grads = jax.tree.map(jnp.add, param_grads, alone_grads[0])
  # The batch's parameter gradient is the sum of the unpadded samples' gradients.
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, atol=1e-5, rtol=1e-5), grads[0], param_grads
  )


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_padding_changes_nothing_in_train(name, random_variables):
  rng = np.random.default_rng(1)
  module = _encoder(name, dropout_rate=0.5)
  x, mask = _padded(rng)
  other = jnp.where(mask[..., None], x, jnp.asarray(rng.normal(size=x.shape), jnp.float32))
  variables = random_variables(module, x, mask)
  rngs = {"dropout": jax.random.key(3)}

  @jax.jit
  def outputs(x):
    """`(pooled, steps)` in train mode, then in eval mode."""
    return [
      module.apply(variables, x, mask, train=train, rngs=rngs, method=method)
      for train in (True, False)
      for method in ("__call__", "sequence")
    ]

  train_pooled, train_steps, eval_pooled, eval_steps = outputs(x)
  other_pooled, other_steps, _, _ = outputs(other)
  np.testing.assert_allclose(train_pooled, other_pooled, atol=1e-6)
  np.testing.assert_allclose(train_steps, other_steps, atol=1e-6)
  # Dropout is on, so the check covers it.
  assert not np.allclose(train_pooled, eval_pooled)
  assert not np.allclose(train_steps, eval_steps)


def _gru_reference(p, x):
  """Flax's GRU cell (`r`, `z` gates; bias on the candidate's recurrent term) over `x` `[T, d]`."""

  def step(h, x_t):
    r = jax.nn.sigmoid(x_t @ p["ir"]["kernel"] + p["ir"]["bias"] + h @ p["hr"]["kernel"])
    z = jax.nn.sigmoid(x_t @ p["iz"]["kernel"] + p["iz"]["bias"] + h @ p["hz"]["kernel"])
    candidate = x_t @ p["in"]["kernel"] + p["in"]["bias"]
    n = jnp.tanh(candidate + r * (h @ p["hn"]["kernel"] + p["hn"]["bias"]))
    h = (1.0 - z) * n + z * h
    return h, h

  return jax.lax.scan(step, jnp.zeros_like(p["hn"]["bias"]), x)[1]


def _bigru_reference(params, x):
  """The encoder on one unpadded sample `[T, d_in]`: the backward GRU reads `x` reversed."""
  forward = _gru_reference(params["gru"]["forward1"], x)
  backward = _gru_reference(params["gru"]["backward1"], x[::-1])[::-1]
  h = jnp.concatenate([forward, backward], axis=-1)
  return h @ params["project"]["kernel"] + params["project"]["bias"]


def test_bigru_matches_a_reference_that_reverses_the_valid_part(random_variables):
  rng = np.random.default_rng(2)
  module = _encoder("bigru")
  lengths = (7, 4, 1)
  x, mask = _padded(rng, lengths)
  variables = random_variables(module, x, mask)
  weights = jnp.asarray(rng.normal(size=(len(lengths), STEPS, FEATURES)), jnp.float32)

  def loss(params, x):
    return jnp.sum(module.apply({"params": params}, x, mask, method="sequence") * weights)

  def reference_loss(params, x):
    return sum(
      jnp.sum(_bigru_reference(params, x[b, :n]) * weights[b, :n]) for b, n in enumerate(lengths)
    )

  steps = jax.jit(functools.partial(module.apply, method="sequence"))(variables, x, mask)
  for b, n in enumerate(lengths):
    np.testing.assert_allclose(
      steps[b, :n], _bigru_reference(variables["params"], x[b, :n]), atol=1e-5, rtol=1e-5
    )
  clean = jnp.where(mask[..., None], x, 0.0)  # The reference cannot take NaN padding.
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)
  expected = jax.jit(jax.grad(reference_loss, argnums=(0, 1)))(variables["params"], clean)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5, rtol=1e-5), grads, expected)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_output_independent_of_batch_mates(name, assert_batch_independent, random_variables):
  rng = np.random.default_rng(4)
  module = _encoder(name)
  batch_a, batch_b = _padded(rng, (5, 2, 7)), _padded(rng, (3, 6, 1))
  apply = jax.jit(functools.partial(module.apply, random_variables(module, *batch_a)))
  assert_batch_independent(lambda batch: apply(*batch), batch_a, batch_b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_shapes_and_dtypes(name, dtype):
  module = _encoder(name, dtype=dtype)
  x, mask = jax.ShapeDtypeStruct((3, STEPS, D_IN), jnp.float32), _mask(LENGTHS)
  variables = jax.eval_shape(module.init, jax.random.key(0), x, mask)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  pooled = jax.eval_shape(module.apply, variables, x, mask)
  steps = jax.eval_shape(functools.partial(module.apply, method="sequence"), variables, x)
  assert (pooled.shape, pooled.dtype) == ((3, 1, FEATURES), dtype)
  assert (steps.shape, steps.dtype) == ((3, STEPS, FEATURES), dtype)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_bfloat16_compute_runs_close_to_float32(name, random_variables):
  x, mask = _padded(np.random.default_rng(5))
  variables = random_variables(_encoder(name), x, mask)
  out32, out16 = (
    jax.jit(_encoder(name, dtype=dtype).apply)(variables, x, mask)
    for dtype in (jnp.float32, jnp.bfloat16)
  )
  assert np.isfinite(np.asarray(out16, np.float32)).all()
  np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_bad_shapes_raise(name):
  module = _encoder(name)
  x = jnp.zeros((2, STEPS, D_IN))
  with pytest.raises(ValueError, match="x must be a sequence"):
    module.init(jax.random.key(0), x[:, 0])
  with pytest.raises(ValueError, match=r"mask must have x's \[batch, steps\] shape"):
    module.init(jax.random.key(0), x, jnp.ones((2, STEPS - 1), bool))
