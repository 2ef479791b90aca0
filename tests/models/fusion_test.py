"""Tests for mtpkd_jax.models.fusion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import fusion, transformer

D = 8


def _tokens(rng, batch, lengths=(3, 2)):
  return [jnp.asarray(rng.normal(size=(batch, n, D)), jnp.float32) for n in lengths]


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("lengths", [(3, 2), (4, 1, 2)])
def test_output_shapes(lengths):
  module = fusion.FusionBlock(num_outputs=5)
  tokens = [jax.ShapeDtypeStruct((6, n, D), jnp.float32) for n in lengths]
  variables = jax.eval_shape(module.init, jax.random.key(0), tokens)
  outputs, z = jax.eval_shape(module.apply, variables, tokens)
  assert (outputs.shape, z.shape) == ((6, 5), (6, D))


def test_pooled_vector_counts_as_one_token(random_variables):
  rng = np.random.default_rng(0)
  module = fusion.FusionBlock(num_outputs=2)
  video, privileged = _tokens(rng, 3, (3, 1))
  apply = jax.jit(functools.partial(module.apply, random_variables(module, [video, privileged])))
  for a, b in zip(apply([video, privileged]), apply([video, privileged[:, 0]]), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lengths", [(3, 2), (3, 1, 2)])
@pytest.mark.parametrize("train", [False, True])
def test_output_independent_of_batch_mates(
  lengths, train, assert_batch_independent, random_variables
):
  # Train mode too: there is no batch statistic anywhere, and dropout is off here.
  rng = np.random.default_rng(0)
  module = fusion.FusionBlock(num_outputs=3, dropout_rate=0.0)
  variables = random_variables(module, _tokens(rng, 4, lengths))
  apply = jax.jit(functools.partial(module.apply, variables, train=train))
  assert_batch_independent(apply, _tokens(rng, 4, lengths), _tokens(rng, 4, lengths))


def test_batch_check_catches_the_release_layout(assert_batch_independent, random_variables):
  # The release fed `[batch, 1, d]` to sequence-first attention, which then attends across
  # the batch; the check used above must fail on that layout.
  rng = np.random.default_rng(0)
  block = transformer.EncoderBlock(num_heads=2, mlp_features=D)
  x_a, x_b = (jnp.asarray(rng.normal(size=(4, 1, D)), jnp.float32) for _ in range(2))
  variables = random_variables(block, x_a)

  @jax.jit
  def release_layout(x):
    return block.apply(variables, x.swapaxes(0, 1)).swapaxes(0, 1)

  with pytest.raises(AssertionError):
    assert_batch_independent(release_layout, x_a, x_b)


def test_two_modality_gate_is_a_sigmoid_mix():
  rng = np.random.default_rng(0)
  xv, xp = (rng.normal(size=(5, D)).astype(np.float32) for _ in range(2))
  module = fusion.Gate()
  variables = module.init(jax.random.key(0), [xv, xp])
  w = variables["params"]["scores"]
  assert w["kernel"].shape == (2 * D, D)
  g = _sigmoid(np.concatenate([xv, xp], axis=1) @ w["kernel"] + w["bias"])
  z = module.apply(variables, [xv, xp])
  np.testing.assert_allclose(z, g * xv + (1 - g) * xp, atol=1e-5)

  forced = {"params": {"scores": {"kernel": jnp.zeros((2 * D, D)), "bias": jnp.full(D, 1.5)}}}
  g = _sigmoid(1.5)
  np.testing.assert_allclose(module.apply(forced, [xv, xp]), g * xv + (1 - g) * xp, atol=1e-6)


def test_three_modality_gate_is_a_softmax_mix():
  rng = np.random.default_rng(0)
  xs = [rng.normal(size=(5, D)).astype(np.float32) for _ in range(3)]
  module = fusion.Gate()
  variables = module.init(jax.random.key(0), xs)
  w = variables["params"]["scores"]
  scores = (np.concatenate(xs, axis=1) @ w["kernel"] + w["bias"]).reshape(5, 2, D)
  scores = np.concatenate([scores, np.zeros((5, 1, D))], axis=1)
  weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
  expected = sum(weights[:, m] * xs[m] for m in range(3))
  np.testing.assert_allclose(module.apply(variables, xs), expected, atol=1e-5)

  # Equal scores give the plain average.
  forced = {"params": {"scores": {"kernel": jnp.zeros((3 * D, 2 * D)), "bias": jnp.zeros(2 * D)}}}
  np.testing.assert_allclose(module.apply(forced, xs), np.mean(xs, axis=0), atol=1e-6)


def test_block_gates_the_pooled_cross_attention_outputs(random_variables):
  rng = np.random.default_rng(0)
  module = fusion.FusionBlock(num_outputs=2)
  tokens = _tokens(rng, 3)
  variables = random_variables(module, tokens)
  gate = {"kernel": jnp.zeros((2 * D, D)), "bias": jnp.full(D, -0.7)}
  variables = {"params": {**variables["params"], "gate": {"scores": gate}}}
  (outputs, z), state = module.apply(variables, tokens, capture_intermediates=True)
  inter = state["intermediates"]
  pooled = [inter[f"cross_attention{m}"]["__call__"][0].mean(axis=1) for m in range(2)]
  g = _sigmoid(-0.7)
  np.testing.assert_allclose(z, g * pooled[0] + (1 - g) * pooled[1], atol=1e-5)
  head = variables["params"]["head"]
  np.testing.assert_allclose(outputs, z @ head["kernel"] + head["bias"], atol=1e-5)


def test_bfloat16_compute_with_float32_params():
  module = fusion.FusionBlock(num_outputs=2, dtype=jnp.bfloat16)
  tokens = [jax.ShapeDtypeStruct((2, n, D), jnp.float32) for n in (3, 2)]
  variables = jax.eval_shape(module.init, jax.random.key(0), tokens)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  outputs, z = jax.eval_shape(module.apply, variables, tokens)
  assert outputs.dtype == z.dtype == jnp.bfloat16


@pytest.mark.parametrize(
  "shapes, match",
  [
    ([(2, 3, D)], "at least 2"),
    ([(2, 3, D), (2, 3, D + 1)], "common"),
    ([(2, 3, D), (3, 3, D)], "common"),
  ],
)
def test_rejects_bad_tokens(shapes, match):
  with pytest.raises(ValueError, match=match):
    fusion.FusionBlock(num_outputs=2).init(jax.random.key(0), [jnp.zeros(s) for s in shapes])


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_modality_dropout_zeroes_at_most_one_modality_per_example(num_modalities):
  batch, rate = 4000, 0.4
  tokens = [jnp.full((batch, 3, 2), m + 1.0) for m in range(num_modalities)]
  dropped = fusion.drop_modalities(jax.random.key(0), tokens, rate)
  # Each example's tokens of a modality are kept whole or zeroed whole.
  zeroed = np.stack([np.all(np.asarray(t) == 0, axis=(1, 2)) for t in dropped], axis=1)
  kept = np.stack([np.all(np.asarray(t) == m + 1.0, axis=(1, 2)) for m, t in enumerate(dropped)], 1)
  assert np.all(zeroed | kept)
  assert np.all(zeroed.sum(axis=1) <= 1)
  # Binomial standard errors are about 0.008 (rate) and 0.012 (a modality's share).
  assert abs(zeroed.any(axis=1).mean() - rate) < 0.04
  shares = zeroed[zeroed.any(axis=1)].mean(axis=0)
  np.testing.assert_allclose(shares, 1.0 / num_modalities, atol=0.05)
  for t, original in zip(
    fusion.drop_modalities(jax.random.key(0), tokens, 0.0), tokens, strict=True
  ):
    np.testing.assert_array_equal(t, original)
  with pytest.raises(ValueError, match="modality_dropout"):
    fusion.drop_modalities(jax.random.key(0), tokens, 1.5)


def test_modality_dropout_acts_in_training_only():
  rng = np.random.default_rng(0)
  tokens = [jnp.asarray(rng.normal(size=(16, n, D)), jnp.float32) for n in (4, 2)]
  plain = fusion.FusionBlock(2, dropout_rate=0.0)
  dropping = fusion.FusionBlock(2, dropout_rate=0.0, modality_dropout=1.0)
  variables = jax.jit(plain.init)(jax.random.key(1), tokens)
  rngs = {"dropout": jax.random.key(2)}
  plain_apply = jax.jit(plain.apply)
  dropping_apply = jax.jit(dropping.apply, static_argnames="train")
  full = plain_apply(variables, tokens)[0]
  np.testing.assert_allclose(dropping_apply(variables, tokens)[0], full, rtol=1e-6)
  # At rate 1 every example trains on one modality alone: its output is the plain block's
  # with that modality's tokens zeroed, and both modalities get dropped somewhere.
  train = np.asarray(dropping_apply(variables, tokens, train=True, rngs=rngs)[0])
  alone = [
    np.asarray(
      plain_apply(variables, [jnp.zeros_like(t) if m == k else t for m, t in enumerate(tokens)])[0]
    )
    for k in range(2)
  ]
  matches = np.stack([np.all(np.isclose(train, a, rtol=1e-5, atol=1e-6), axis=1) for a in alone])
  assert np.all(matches.any(axis=0))
  assert np.all(matches.any(axis=1))
  assert not np.allclose(train, full, atol=1e-3)
