"""Tests for mtpkd_jax.models.audio and mtpkd_jax.models.transformer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import audio, transformer


def _features(rng, batch, steps=12, features=10):
  return jnp.asarray(rng.normal(size=(batch, steps, features)), jnp.float32)


def test_sinusoidal_positions_match_the_formula():
  length, d = 7, 6
  pos, i = np.arange(length)[:, None], np.arange(d // 2)[None, :]
  angle = pos / 10000.0 ** (2 * i / d)
  expected = np.zeros((length, d))
  expected[:, 0::2], expected[:, 1::2] = np.sin(angle), np.cos(angle)
  np.testing.assert_allclose(transformer.sinusoidal_positions(length, d), expected, atol=1e-5)


@pytest.mark.parametrize("patch_size, num_tokens", [(1, 12), (5, 2)])
def test_token_shape(patch_size, num_tokens):
  module = audio.AudioTransformer(features=16, patch_size=patch_size)
  x = jax.ShapeDtypeStruct((3, 12, 10), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  assert jax.eval_shape(module.apply, variables, x).shape == (3, num_tokens, 16)


def test_eval_output_independent_of_batch_mates(assert_batch_independent, random_variables):
  rng = np.random.default_rng(0)
  module = audio.AudioTransformer(features=16, num_heads=2)
  apply = jax.jit(functools.partial(module.apply, random_variables(module, _features(rng, 3))))
  assert_batch_independent(apply, _features(rng, 3), _features(rng, 3))


def test_dropout_only_in_train_mode(random_variables):
  rng = np.random.default_rng(0)
  module = audio.AudioTransformer(features=16, num_heads=2, dropout_rate=0.5)
  x = _features(rng, 2)
  variables = random_variables(module, x)
  apply = jax.jit(module.apply, static_argnames="train")
  np.testing.assert_array_equal(apply(variables, x), apply(variables, x))
  train_a = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)


def test_bfloat16_compute_with_float32_params():
  module = audio.AudioTransformer(features=16, dtype=jnp.bfloat16)
  x = jax.ShapeDtypeStruct((2, 12, 10), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert jax.eval_shape(module.apply, variables, x).dtype == jnp.bfloat16
