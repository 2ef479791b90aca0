"""Tests for mtpkd_jax.models.video."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import video

# torchvision's published totals (docs of r3d_18 / r2plus1d_18), 400-way Kinetics fc included.
TORCHVISION_R3D18 = 33_371_472
TORCHVISION_R2PLUS1D18 = 31_505_325
FC_400 = 512 * 400 + 400


def _torchvision_feature_params(factorized: bool) -> int:
  """Parameters of torchvision's r3d_18 / r2plus1d_18 up to the pooled features.

  Counted from the architecture: bias-free convs (`in * out * kernel volume`), and per
  BatchNorm a weight and a bias per channel (its running mean/var are buffers in PyTorch
  and `batch_stats` in Flax, not parameters); the fc is left out.
  """

  def conv(c_in, c_out, *kernel):
    return c_in * c_out * math.prod(kernel)

  def bn(c):
    return 2 * c

  if factorized:  # R2Plus1dStem: 1x7x7 to 45 channels, then 3x1x1 to 64.
    total = conv(3, 45, 1, 7, 7) + bn(45) + conv(45, 64, 3, 1, 1) + bn(64)
  else:  # BasicStem: 3x7x7 to 64.
    total = conv(3, 64, 3, 7, 7) + bn(64)
  c_in = 64
  for stage, width in enumerate((64, 128, 256, 512)):
    for block in range(2):
      stride = 2 if stage > 0 and block == 0 else 1
      mid = (c_in * width * 27) // (c_in * 9 + 3 * width)
      for c in (c_in, width):  # conv1 reads the block input, conv2 the block width.
        if factorized:
          total += conv(c, mid, 1, 3, 3) + bn(mid) + conv(mid, width, 3, 1, 1)
        else:
          total += conv(c, width, 3, 3, 3)
        total += bn(width)
      if stride != 1 or c_in != width:
        total += conv(c_in, width, 1, 1, 1) + bn(width)
      c_in = width
  return total


@pytest.mark.parametrize(
  "model, factorized, published",
  [(video.R3D18, False, TORCHVISION_R3D18), (video.R2Plus1D18, True, TORCHVISION_R2PLUS1D18)],
)
def test_full_size_param_count_and_shape(model, factorized, published, param_count):
  expected = _torchvision_feature_params(factorized)
  assert expected + FC_400 == published
  module = model()
  clip = jax.ShapeDtypeStruct((2, 10, 112, 112, 3), jnp.uint8)
  variables = jax.eval_shape(module.init, jax.random.key(0), clip)
  assert param_count(variables["params"]) == expected
  assert jax.eval_shape(module.apply, variables, clip).shape == (2, 2, 512)


def _clips(rng, batch, shape=(8, 16, 16)):
  return jnp.asarray(rng.integers(0, 256, (batch, *shape, 3), dtype=np.uint8))


@pytest.mark.parametrize(
  "model, num_tokens",
  [
    (functools.partial(video.R3D18, features=16), 1),
    (functools.partial(video.R2Plus1D18, features=16), 1),
    (functools.partial(video.CNN3DSmall, features=16, widths=(8, 8)), 4),
    (functools.partial(video.FrameTransformer, features=16, widths=(8, 8)), 8),
  ],
  ids=["r3d18", "r2plus1d18", "cnn3d_small", "frame_transformer"],
)
def test_eval_output_independent_of_batch_mates(
  model, num_tokens, assert_batch_independent, random_variables
):
  rng = np.random.default_rng(0)
  module = model()
  apply = jax.jit(functools.partial(module.apply, random_variables(module, _clips(rng, 3))))
  assert apply(_clips(rng, 3)).shape == (3, num_tokens, 16)
  assert_batch_independent(apply, _clips(rng, 3), _clips(rng, 3), atol=1e-4, rtol=1e-4)


def test_train_mode_updates_batch_stats(random_variables):
  rng = np.random.default_rng(0)
  module = video.VideoResNet(stage_sizes=(1, 1), features=8)
  clips = _clips(rng, 2, shape=(4, 8, 8))
  variables = random_variables(module, clips)
  train_apply = jax.jit(functools.partial(module.apply, train=True, mutable=["batch_stats"]))
  tokens, updates = train_apply(variables, clips)
  assert tokens.shape == (2, 2, 8)
  changed = jax.tree.map(
    lambda a, b: not np.allclose(a, b), variables["batch_stats"], updates["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))


def test_cnn3d_small_tokens_on_cpu_sized_clips():
  module = video.CNN3DSmall(features=24)
  clip = jax.ShapeDtypeStruct((32, 10, 32, 32, 3), jnp.uint8)
  variables = jax.eval_shape(module.init, jax.random.key(0), clip)
  assert jax.eval_shape(module.apply, variables, clip).shape == (32, 5, 24)


def test_uint8_is_scaled_to_unit_range(random_variables):
  rng = np.random.default_rng(1)
  module = video.CNN3DSmall(features=8, widths=(8, 8))
  clips = _clips(rng, 2)
  apply = jax.jit(functools.partial(module.apply, random_variables(module, clips)))
  np.testing.assert_allclose(apply(clips), apply(clips.astype(jnp.float32) / 255.0), atol=1e-5)


@pytest.mark.parametrize(
  "model",
  [functools.partial(video.R2Plus1D18, features=16), video.CNN3DSmall],
  ids=["r2plus1d18", "cnn3d_small"],
)
def test_bfloat16_compute_with_float32_params(model):
  module = model(dtype=jnp.bfloat16)
  clip = jax.ShapeDtypeStruct((2, 8, 16, 16, 3), jnp.uint8)
  variables = jax.eval_shape(module.init, jax.random.key(0), clip)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert jax.eval_shape(module.apply, variables, clip).dtype == jnp.bfloat16


def test_resnet_pixel_normalisation_is_per_channel_on_unit_range(random_variables):
  rng = np.random.default_rng(4)
  mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
  module = video.VideoResNet(stage_sizes=(1,), features=8, pixel_mean=mean, pixel_std=std)
  clips = _clips(rng, 2, shape=(4, 8, 8))
  variables = random_variables(module, clips)
  normalised = (clips / 255.0 - np.asarray(mean)) / np.asarray(std)
  plain = video.VideoResNet(stage_sizes=(1,), features=8)
  np.testing.assert_allclose(
    module.apply(variables, clips),
    plain.apply(variables, normalised.astype(np.float32)),
    atol=1e-5,
    rtol=1e-5,
  )
  with pytest.raises(ValueError, match="pixel_mean and pixel_std"):
    video.VideoResNet(stage_sizes=(1,), features=8, pixel_mean=mean).init(jax.random.key(0), clips)


def test_rejects_non_video_input():
  with pytest.raises(ValueError, match="batch, time, height, width"):
    video.CNN3DSmall().init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))


def _frame_transformer(**kwargs):
  return video.FrameTransformer(features=16, widths=(8, 8), dropout_rate=0.0, **kwargs)


def _pooled(module, variables, clips):
  return np.asarray(module.apply(variables, clips).mean(axis=1))


def test_frame_transformer_pooled_embedding_depends_on_frame_order(random_variables):
  rng = np.random.default_rng(2)
  clips = _clips(rng, 2)
  reversed_clips = clips[:, ::-1]
  # A per-frame encoder whose tokens are mean-pooled cannot tell the two clips apart ...
  per_frame = video.CNN3DSmall(features=16, widths=(8,))
  variables = random_variables(per_frame, clips)
  np.testing.assert_allclose(
    _pooled(per_frame, variables, clips),
    _pooled(per_frame, variables, reversed_clips),
    atol=1e-5,
    rtol=1e-5,
  )
  # ... the frame transformer's pooled embedding can.
  module = _frame_transformer()
  variables = random_variables(module, clips)
  change = np.abs(_pooled(module, variables, clips) - _pooled(module, variables, reversed_clips))
  assert change.max() > 1e-2


def test_frame_transformer_centering_ignores_a_static_face(random_variables):
  rng = np.random.default_rng(3)
  # Two clips each repeating one (different) frame: nothing changes within either clip.
  static = jnp.repeat(_clips(rng, 2, shape=(1, 16, 16)), 8, axis=1)
  module = _frame_transformer()
  tokens = module.apply(random_variables(module, static), static)
  np.testing.assert_allclose(tokens[0], tokens[1], atol=1e-5)
  uncentered = _frame_transformer(center=False)
  tokens = uncentered.apply(random_variables(uncentered, static), static)
  assert not np.allclose(tokens[0], tokens[1], atol=1e-3)


@pytest.mark.parametrize("patch, side", [(2, 4), (4, 2)])
def test_frame_transformer_stem_patch_sets_the_flattened_map(patch, side, random_variables):
  # 16x16 frames: the stem leaves 16 / patch per side, each further width halves it.
  rng = np.random.default_rng(0)
  clips = _clips(rng, 2, shape=(4, 16, 16))
  module = _frame_transformer(patch=patch)
  kernel = random_variables(module, clips)["params"]["frame_embed"]["kernel"]
  assert kernel.shape == (side * side * 8, 16)
  assert module.apply(random_variables(module, clips), clips).shape == (2, 4, 16)


def test_frame_transformer_augments_clips_in_training_only(random_variables):
  clips = _clips(np.random.default_rng(4), 2)
  module = _frame_transformer(reverse=1.0, mirror=1.0)
  variables = random_variables(module, clips)
  plain = _frame_transformer()
  key = {"dropout": jax.random.key(0)}
  np.testing.assert_allclose(
    module.apply(variables, clips, train=True, rngs=key),
    plain.apply(variables, clips[:, ::-1, :, ::-1], train=True, rngs=key),
    atol=1e-5,
  )
  np.testing.assert_allclose(
    module.apply(variables, clips), plain.apply(variables, clips), atol=1e-6
  )
