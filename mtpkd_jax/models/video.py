"""Video encoders: clips `[batch, time, height, width, 3]` to temporal tokens `[batch, L, d]`.

The 3-D CNNs' tokens are their last feature map averaged over space and kept over
(downsampled) time; `FrameTransformer` gives one token per frame. The pooled clip embedding
is `tokens.mean(axis=1)`. uint8 clips are scaled to [0, 1] here, float
clips are used as given; `VideoResNet` can then normalise them per channel (as torchvision's
pretrained weights expect, see `convert_torchvision`).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import augment, resnet, transformer
from mtpkd_jax.models import dropout as dropout_lib


def _as_float(video: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """Scales uint8 pixels to [0, 1]; casts float pixels as they are."""
  if video.ndim != 5:
    raise ValueError(f"Expected video [batch, time, height, width, 3], got {video.shape}.")
  if video.dtype == jnp.uint8:
    return (video.astype(jnp.float32) / 255.0).astype(dtype)
  return video.astype(dtype)


class VideoResNet(nn.Module):
  """3-D ResNet in torchvision's `VideoResNet` layout (R3D, or R(2+1)D if `factorized`).

  Stem: a 3x7x7 conv with stride (1, 2, 2) (R3D), or a 1x7x7 conv to 45 channels then a
  3x1x1 conv (R(2+1)D); no max-pool. Stage `i` has width `features / 2**(stages - 1 - i)`
  (64, 128, 256, 512 for the published models) and, from the second stage on, halves time,
  height and width.

  Attributes:
    stage_sizes: Blocks per stage; `(2, 2, 2, 2)` is the 18-layer model.
    factorized: Factor every 3x3x3 conv into 1x3x3 then 3x1x1 (R(2+1)D).
    features: Token width `d`, the last stage's width; 512 in the published models. Smaller
      values shrink every stage proportionally (for tests and CPU runs).
    dtype: Compute dtype; parameters are float32.
    bn_axis_name: Mesh axis over which BatchNorm averages batch statistics, or None.
    pixel_mean: Per-channel (RGB) mean subtracted from the [0, 1] pixels, or None for no
      normalisation; torchvision's Kinetics-400 weights expect
      `convert_torchvision.KINETICS_MEAN`.
    pixel_std: Per-channel standard deviation the pixels are divided by (with `pixel_mean`).
  """

  stage_sizes: Sequence[int]
  factorized: bool = False
  features: int = 512
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None
  pixel_mean: Sequence[float] | None = None
  pixel_std: Sequence[float] | None = None

  @nn.compact
  def __call__(self, video: jax.Array, train: bool = False) -> jax.Array:
    """Encodes a clip.

    Args:
      video: uint8 or float array of shape `[batch, time, height, width, 3]`.
      train: Use batch statistics in BatchNorm (and update the running averages, which
        requires `mutable=["batch_stats"]`).

    Returns:
      Tokens of shape `[batch, ceil(time / 2**(stages - 1)), features]`.
    """
    scale = 2 ** (len(self.stage_sizes) - 1)
    if self.features % scale:
      raise ValueError(f"features={self.features} must be a multiple of {scale}.")
    width = self.features // scale
    norm = functools.partial(resnet.batch_norm, train, self.dtype, self.bn_axis_name)

    x = _as_float(video, self.dtype)
    if (self.pixel_mean is None) != (self.pixel_std is None):
      raise ValueError("Set both pixel_mean and pixel_std, or neither.")
    if self.pixel_mean is not None:
      mean = jnp.asarray(self.pixel_mean, self.dtype)
      x = (x - mean) / jnp.asarray(self.pixel_std, self.dtype)
    if self.factorized:
      # torchvision hard-codes 45 channels between the two stem convs (for width 64).
      stem_mid = 45 * width // 64
      x = resnet.conv(stem_mid, (1, 7, 7), (1, 2, 2), self.dtype, name="stem_spatial")(x)
      x = nn.relu(norm(name="stem_spatial_bn")(x))
      x = resnet.conv(width, (3, 1, 1), (1, 1, 1), self.dtype, name="stem_temporal")(x)
    else:
      x = resnet.conv(width, (3, 7, 7), (1, 2, 2), self.dtype, name="stem")(x)
    x = nn.relu(norm(name="stem_bn")(x))
    x = resnet.ResNetStages(
      self.stage_sizes,
      width,
      ndim=3,
      factorized=self.factorized,
      dtype=self.dtype,
      bn_axis_name=self.bn_axis_name,
      name="stages",
    )(x, train)
    return x.mean(axis=(2, 3))


R3D18 = functools.partial(VideoResNet, stage_sizes=(2, 2, 2, 2), factorized=False)
R2Plus1D18 = functools.partial(VideoResNet, stage_sizes=(2, 2, 2, 2), factorized=True)


class CNN3DSmall(nn.Module):
  """A small 3-D CNN for CPU-sized clips (about 10x32x32), with (2+1)D-factored convs.

  A per-frame 4x4 patchifying conv, then per further entry of `widths` a 3x3 spatial conv
  with stride 2 and a 3-tap temporal conv (stride 2 in the last block, 1 before), each
  followed by GroupNorm and ReLU; the last map is averaged over space and projected to
  `features`. The factoring is for speed: XLA's CPU 3-D convolutions are an order of
  magnitude slower than the 2-D and 1-D ones used here. GroupNorm keeps every sample
  independent of its batch-mates in training too, with no state to synchronise.

  Attributes:
    features: Token width `d`.
    widths: Channels of the stem and of each block; multiples of `num_groups`.
    num_groups: GroupNorm groups.
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 512
  widths: Sequence[int] = (16, 32, 64)
  num_groups: int = 8
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, train: bool = False) -> jax.Array:
    """Encodes a clip.

    Args:
      video: uint8 or float array of shape `[batch, time, height, width, 3]`; pixels
        past a multiple of 4 in height and width are cropped by the stem.
      train: Unused (no dropout or batch statistics); kept for a uniform encoder API.

    Returns:
      Tokens of shape `[batch, ceil(time / 2), features]` (`[batch, time, features]` if
      `widths` has a single entry).
    """
    del train
    conv = functools.partial(nn.Conv, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(
      nn.GroupNorm, num_groups=self.num_groups, dtype=self.dtype, param_dtype=jnp.float32
    )
    # nn.Conv treats leading axes as batch axes: a 2-D kernel convolves each frame, and a
    # 1-D kernel on the time-last layout convolves each pixel's time series.
    x = _as_float(video, self.dtype)
    x = nn.relu(norm()(conv(self.widths[0], (4, 4), strides=4, padding="VALID")(x)))
    for i, width in enumerate(self.widths[1:], start=2):
      x = nn.relu(norm()(conv(width, (3, 3), strides=2)(x)))
      t_stride = 2 if i == len(self.widths) else 1
      x = jnp.moveaxis(conv(width, (3,), strides=t_stride)(jnp.moveaxis(x, 1, 3)), 3, 1)
      x = nn.relu(norm()(x))
    return nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32)(x.mean((2, 3)))


class FrameTransformer(nn.Module):
  """A per-frame 2-D CNN, then a temporal transformer over the frames, in order.

  Each frame goes through a `patch` x `patch` patchifying conv and, per further entry of
  `widths`, a 3x3 conv with stride 2, each followed by ReLU; the last map is flattened, so
  the frame embedding knows *where* in the face something is, and projected to `features`.
  With `center`, the clip's mean frame embedding is subtracted from every frame: what stays
  is how the face changes within the clip, not who it is (on `synthetic_affect` the pain
  signal is that change, the static face is nuisance). Sinusoidal positions are added and
  `num_layers` post-LayerNorm encoder layers attend over the frames, so every token carries
  its time step and the mean-pooled clip embedding depends on temporal order. There is no
  normalisation in the frame CNN: GroupNorm per frame or per clip both fitted faster and
  validated worse (``docs/results/synthetic_mtpkdot.md``).

  Attributes:
    features: Token width `d`.
    widths: Channels of the stem and of each strided block.
    patch: Side (and stride) of the stem's patchifying conv.
    center: Subtract the clip's mean frame embedding before the temporal layers.
    num_layers: Temporal encoder layers.
    num_heads: Attention heads; must divide `features`.
    dropout_rate: Dropout on the frame embeddings and in the temporal layers.
    reverse: In training, probability of playing a clip backwards (`augment.ClipAugment`).
    mirror: In training, probability of flipping a clip left to right.
    shift: In training, largest translation of a clip, in pixels along each axis.
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 512
  widths: Sequence[int] = (16, 32, 32)
  patch: int = 2
  center: bool = True
  num_layers: int = 1
  num_heads: int = 2
  dropout_rate: float = 0.1
  reverse: float = 0.0
  mirror: float = 0.0
  shift: int = 0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, train: bool = False) -> jax.Array:
    """Encodes a clip.

    Args:
      video: uint8 or float array of shape `[batch, time, height, width, 3]`; pixels
        past a multiple of `patch` in height and width are cropped by the stem.
      train: Apply dropout and augmentation (both need a `"dropout"` rng).

    Returns:
      Tokens of shape `[batch, time, features]`, one per frame.
    """
    conv = functools.partial(nn.Conv, dtype=self.dtype, param_dtype=jnp.float32)
    x = _as_float(video, self.dtype)
    x = augment.ClipAugment(self.reverse, self.mirror, self.shift)(x, train)
    batch, time = x.shape[:2]
    # nn.Conv treats the leading axes as batch axes: 2-D kernels convolve each frame.
    patch = (self.patch, self.patch)
    x = nn.relu(conv(self.widths[0], patch, strides=patch, padding="VALID")(x))
    for width in self.widths[1:]:
      x = nn.relu(conv(width, (3, 3), strides=2)(x))
    x = nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32, name="frame_embed")(
      x.reshape(batch, time, -1)
    )
    if self.center:
      x = x - x.mean(axis=1, keepdims=True)
    x = x + transformer.sinusoidal_positions(time, self.features).astype(self.dtype)
    x = dropout_lib.Dropout(self.dropout_rate)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = transformer.EncoderBlock(
        self.num_heads, self.features, self.dropout_rate, self.dtype, name=f"temporal{i + 1}"
      )(x, train=train)
    return x
