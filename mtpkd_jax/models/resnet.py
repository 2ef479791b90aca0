"""ResNet building blocks shared by the 2-D (spectrogram) and 3-D (video) encoders.

The layout follows torchvision (`resnet18`, `r3d_18`, `r2plus1d_18`): bias-free convolutions
padded by `kernel // 2` as in PyTorch, BatchNorm with PyTorch's momentum and epsilon, and a
1x1(x1) projection shortcut wherever the stride or width changes. Inputs are channels-last.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# torchvision initialises conv kernels with kaiming_normal_(mode="fan_out", nonlinearity="relu").
_KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(
  features: int,
  kernel_size: Sequence[int],
  strides: Sequence[int],
  dtype: jnp.dtype,
  name: str | None = None,
) -> nn.Conv:
  """A bias-free convolution padded like PyTorch (`kernel // 2` on each side).

  Args:
    features: Output channels.
    kernel_size: Kernel extent per spatial axis.
    strides: Stride per spatial axis.
    dtype: Compute dtype; parameters stay float32.
    name: Optional submodule name.

  Returns:
    An unbound `nn.Conv`.
  """
  return nn.Conv(
    features,
    tuple(kernel_size),
    strides=tuple(strides),
    padding=tuple((k // 2, k // 2) for k in kernel_size),
    use_bias=False,
    kernel_init=_KAIMING_FAN_OUT,
    dtype=dtype,
    param_dtype=jnp.float32,
    name=name,
  )


def batch_norm(
  train: bool, dtype: jnp.dtype, axis_name: str | None, name: str | None = None
) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1, i.e. decay 0.9; epsilon 1e-5).

  Args:
    train: Normalise with batch statistics (and update the running averages) if true,
      with the running averages otherwise.
    dtype: Compute dtype; parameters stay float32.
    axis_name: Mapped mesh axis over which batch statistics are averaged, or None.
    name: Optional submodule name.

  Returns:
    An unbound `nn.BatchNorm`.
  """
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    axis_name=axis_name,
    dtype=dtype,
    param_dtype=jnp.float32,
    name=name,
  )


def mid_features(in_features: int, out_features: int) -> int:
  """Width between the spatial and temporal halves of a (2+1)D conv (Tran et al., 2018).

  Chosen so that the factored conv has about as many parameters as a full 3x3x3 conv.

  Args:
    in_features: Input channels of the block.
    out_features: Output channels of the block.

  Returns:
    `in * out * 27 // (in * 9 + 3 * out)`, as in torchvision's `BasicBlock`.
  """
  return (in_features * out_features * 27) // (in_features * 9 + 3 * out_features)


class Conv2Plus1D(nn.Module):
  """A 3x3x3 convolution factored into a 1x3x3 spatial and a 3x1x1 temporal one.

  Attributes:
    features: Output channels.
    mid_features: Channels between the two halves.
    stride: Stride applied to time (temporal half) and space (spatial half).
    dtype: Compute dtype.
    bn_axis_name: Mesh axis for cross-device BatchNorm statistics, or None.
  """

  features: int
  mid_features: int
  stride: int = 1
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the factored conv to `[batch, time, height, width, channels]`."""
    s = self.stride
    x = conv(self.mid_features, (1, 3, 3), (1, s, s), self.dtype, name="spatial")(x)
    x = batch_norm(train, self.dtype, self.bn_axis_name, name="spatial_bn")(x)
    x = nn.relu(x)
    return conv(self.features, (3, 1, 1), (s, 1, 1), self.dtype, name="temporal")(x)


class BasicBlock(nn.Module):
  """ResNet basic block: two 3x..x3 convs and an identity or projection shortcut.

  Attributes:
    features: Output channels.
    stride: Stride on every spatial axis (time included for video).
    ndim: Number of spatial axes: 2 for images/spectrograms, 3 for clips.
    factorized: Use (2+1)D convs (`ndim == 3` only), as in R(2+1)D.
    dtype: Compute dtype.
    bn_axis_name: Mesh axis for cross-device BatchNorm statistics, or None.
  """

  features: int
  stride: int = 1
  ndim: int = 2
  factorized: bool = False
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the block to a channels-last array with `ndim` spatial axes."""
    in_features = x.shape[-1]
    norm = functools.partial(batch_norm, train, self.dtype, self.bn_axis_name)

    def conv3(y: jax.Array, stride: int, name: str) -> jax.Array:
      if self.factorized:
        # torchvision uses the block's input width for both convs of the block.
        mid = mid_features(in_features, self.features)
        return Conv2Plus1D(self.features, mid, stride, self.dtype, self.bn_axis_name, name=name)(
          y, train
        )
      return conv(self.features, (3,) * self.ndim, (stride,) * self.ndim, self.dtype, name)(y)

    y = nn.relu(norm(name="bn1")(conv3(x, self.stride, "conv1")))
    y = norm(name="bn2")(conv3(y, 1, "conv2"))
    if self.stride != 1 or in_features != self.features:
      x = conv(
        self.features,
        (1,) * self.ndim,
        (self.stride,) * self.ndim,
        self.dtype,
        name="shortcut",
      )(x)
      x = norm(name="shortcut_bn")(x)
    return nn.relu(x + y)


class ResNetStages(nn.Module):
  """The residual stages of a ResNet: stage `i` has width `width * 2**i`.

  The first stage keeps the resolution; each later one halves every spatial axis in its
  first block.

  Attributes:
    stage_sizes: Blocks per stage, e.g. `(2, 2, 2, 2)` for ResNet-18.
    width: Width of the first stage (64 in the published models).
    ndim: Number of spatial axes: 2 or 3.
    factorized: Use (2+1)D convs (`ndim == 3` only).
    dtype: Compute dtype.
    bn_axis_name: Mesh axis for cross-device BatchNorm statistics, or None.
  """

  stage_sizes: Sequence[int]
  width: int = 64
  ndim: int = 2
  factorized: bool = False
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps `[batch, *spatial, c]` to `[batch, *spatial / 2**(S - 1), width * 2**(S - 1)]`.

    `S = len(stage_sizes)`; spatial sizes are rounded up.
    """
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = BasicBlock(
          self.width * 2**i,
          stride=2 if i > 0 and j == 0 else 1,
          ndim=self.ndim,
          factorized=self.factorized,
          dtype=self.dtype,
          bn_axis_name=self.bn_axis_name,
          name=f"stage{i + 1}_block{j + 1}",
        )(x, train)
    return x
