"""Tests for mtpkd_jax.models.translation (CMKT's sequence decoder)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import translation

D_IN, FEATURES, STEPS = 6, 4, 5
LENGTHS = (5, 2, 0)

DECODERS = {
  "mlp": functools.partial(translation.SequenceDecoder, kind="mlp", hidden=8, num_layers=2),
  "linear": functools.partial(translation.SequenceDecoder, kind="mlp", num_layers=0),
  "transformer": functools.partial(
    translation.SequenceDecoder, kind="transformer", hidden=8, num_heads=2
  ),
}


def _padded(rng, lengths=LENGTHS):
  """Random valid steps, garbage padding (huge values, NaN); and the mask."""
  mask = np.arange(STEPS)[None, :] < np.asarray(lengths)[:, None]
  z = rng.normal(size=(len(lengths), STEPS, D_IN))
  z[~mask] = 1e4
  z[1, -1, 0] = np.nan
  return jnp.asarray(z, jnp.float32), jnp.asarray(mask)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_padding_changes_nothing(name, random_variables):
  rng = np.random.default_rng(0)
  module = DECODERS[name](features=FEATURES)
  z, mask = _padded(rng)
  variables = random_variables(module, z, mask)
  apply = jax.jit(module.apply)
  out = apply(variables, z, mask)
  assert out.shape == (len(LENGTHS), STEPS, FEATURES)
  assert np.all(np.isfinite(out))
  for b, n in enumerate(LENGTHS):
    np.testing.assert_array_equal(out[b, n:], 0.0)
    if n:  # The same sample, unpadded and without a mask.
      alone = apply(variables, z[b : b + 1, :n], None)
      np.testing.assert_allclose(out[b, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_mlp_matches_a_numpy_reference(random_variables):
  module = DECODERS["mlp"](features=FEATURES)
  z, mask = _padded(np.random.default_rng(1))
  variables = random_variables(module, z, mask)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  out = jax.jit(module.apply)(variables, z, mask)
  for b, n in enumerate(LENGTHS):
    for t in range(n):
      h = np.asarray(z[b, t], np.float64)
      for layer in ("dense1", "dense2"):
        h = np.maximum(h @ p[layer]["kernel"] + p[layer]["bias"], 0.0)
      expected = h @ p["out"]["kernel"] + p["out"]["bias"]
      np.testing.assert_allclose(out[b, t], expected, atol=1e-5, rtol=1e-5)


def test_transformer_mixes_valid_steps_only(random_variables):
  module = DECODERS["transformer"](features=FEATURES)
  z, mask = _padded(np.random.default_rng(2))
  variables = random_variables(module, z, mask)
  apply = jax.jit(module.apply)
  out = apply(variables, z, mask)
  # Changing step 1 of the first sample changes its output at step 0 (attention), and
  # nothing in the other samples.
  changed = apply(variables, z.at[0, 1].add(1.0), mask)
  assert not np.allclose(out[0, 0], changed[0, 0])
  np.testing.assert_array_equal(out[1:], changed[1:])


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_train_mode_padding_changes_nothing(name, random_variables):
  rng = np.random.default_rng(3)
  module = DECODERS[name](features=FEATURES, dropout_rate=0.5)
  z, mask = _padded(rng)
  other = jnp.where(mask[..., None], z, jnp.asarray(rng.normal(size=z.shape), jnp.float32))
  variables = random_variables(module, z, mask)

  @jax.jit
  def outputs(z):
    return [
      module.apply(variables, z, mask, train=train, rngs={"dropout": jax.random.key(0)})
      for train in (True, False)
    ]

  (train_out, eval_out), (other_out, _) = outputs(z), outputs(other)
  np.testing.assert_allclose(train_out, other_out, atol=1e-6)
  if name != "linear":  # Dropout is on, so the check covers it.
    assert not np.allclose(train_out, eval_out)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_shapes_and_dtypes(name, dtype):
  module = DECODERS[name](features=FEATURES, dtype=dtype)
  z = jax.ShapeDtypeStruct((3, STEPS, D_IN), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), z)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(module.apply, variables, z)
  assert (out.shape, out.dtype) == ((3, STEPS, FEATURES), dtype)


@pytest.mark.parametrize(
  ("module", "args", "message"),
  [
    (translation.SequenceDecoder(FEATURES, kind="gru"), ((2, STEPS, D_IN),), "`kind`"),
    (translation.SequenceDecoder(FEATURES, num_layers=-1), ((2, STEPS, D_IN),), "`num_layers`"),
    (translation.SequenceDecoder(FEATURES), ((2, D_IN),), "x must be a sequence"),
  ],
)
def test_bad_arguments_raise(module, args, message):
  with pytest.raises(ValueError, match=message):
    module.init(jax.random.key(0), *(jnp.zeros(s) for s in args))
