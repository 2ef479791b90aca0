"""Physiological-signal encoders: `[batch, time, channels]` to temporal tokens `[batch, L, d]`.

Two encoders: a 1-D CNN over the raw channels, and a ResNet-18 over per-channel spectrograms
computed in JAX (the release's EMG input: window 16, overlap 4, nfft 128, giving 65
frequency by about 127 time bins for 3 s at 512 Hz).
"""

import functools
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mtpkd_jax.models import resnet


def _check_signal(x: jax.Array) -> None:
  if x.ndim != 3:
    raise ValueError(f"Expected signals [batch, time, channels], got {x.shape}.")


def _ordered_dot(samples: jax.Array, rows: np.ndarray) -> jax.Array:
  """`sum_t samples[t][..., None] * rows[t]`, added one `t` at a time.

  XLA's reductions, FFTs and matmuls round an element differently with the size of the
  array's other dimensions, the batch among them, and the log spectrogram magnifies that
  near its floor until an encoder trains differently on 1 and 4 devices. A sum in a fixed
  order rounds every example alike whatever the batch.

  Args:
    samples: Array of shape `[n, ...]`.
    rows: Array of shape `[n, k]`.

  Returns:
    Array of shape `[..., k]`.
  """

  def add(total, term):
    sample, row = term
    return total + sample[..., None] * row, None

  zeros = jnp.zeros(samples.shape[1:] + rows.shape[1:], samples.dtype)
  return lax.scan(add, zeros, (samples, rows))[0]


def spectrogram(
  x: jax.Array,
  window: int = 16,
  overlap: int = 4,
  nfft: int = 128,
  mode: Literal["psd", "magnitude"] = "psd",
  fs: float = 1.0,
) -> jax.Array:
  """One-sided short-time spectrum, as `scipy.signal.spectrogram` with a Hann window.

  Equals `scipy.signal.spectrogram(x, fs, window="hann", nperseg=window,
  noverlap=overlap, nfft=nfft, mode=mode)[2]` with scipy's other defaults: periodic Hann
  window, each segment's mean removed (`detrend="constant"`), no boundary padding, and
  `scaling="density"`. `"psd"` is the power spectral density `|X|^2 / (fs * sum(w^2))`
  with every bin but DC (and Nyquist, for even `nfft`) doubled; `"magnitude"` is
  `|X| / sqrt(fs * sum(w^2))`, not doubled.

  Args:
    x: Real array of shape `[..., time]`.
    window: Segment length (`nperseg`).
    overlap: Samples shared by consecutive segments (`noverlap`); less than `window`.
    nfft: FFT length, at least `window` (segments are zero-padded).
    mode: `"psd"` (power) or `"magnitude"`.
    fs: Sampling frequency; only scales the density.

  Returns:
    Float32 array of shape `[..., nfft // 2 + 1, (time - overlap) // (window - overlap)]`:
    frequency bins by segments.
  """
  if not 0 <= overlap < window <= min(nfft, x.shape[-1]):
    raise ValueError(
      f"Need 0 <= overlap < window <= min(nfft, time); got overlap={overlap}, "
      f"window={window}, nfft={nfft}, time={x.shape[-1]}."
    )
  if mode not in ("psd", "magnitude"):
    raise ValueError(f"mode must be 'psd' or 'magnitude', got {mode!r}.")
  step = window - overlap
  num_segments = (x.shape[-1] - overlap) // step
  # [window, ..., segments]: sample t of every segment on the leading axis.
  index = step * np.arange(num_segments)[None, :] + np.arange(window)[:, None]
  samples = jnp.moveaxis(x.astype(jnp.float32)[..., index], -2, 0)
  samples = samples - _ordered_dot(samples, np.ones((window, 1), np.float32))[..., 0] / window
  # Periodic ("DFT-even") Hann, scipy.signal.get_window("hann", window)'s default.
  t = np.arange(window)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * t / window)
  # The zero-padded DFT's [cos | -sin] rows, windowed, built in float64.
  angle = 2 * np.pi * np.outer(t, np.arange(nfft // 2 + 1)) / nfft
  table = hann[:, None] * np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
  real, imag = jnp.split(_ordered_dot(samples, table.astype(np.float32)), 2, axis=-1)
  power = real**2 + imag**2
  density = fs * np.sum(hann**2)
  if mode == "magnitude":
    out = jnp.sqrt(power / density)
  else:
    doubled = np.ones(nfft // 2 + 1)
    doubled[1 : (nfft + 1) // 2] = 2.0
    out = power * (doubled / density).astype(np.float32)
  return jnp.swapaxes(out, -1, -2)


class Conv1DEncoder(nn.Module):
  """Strided 1-D CNN over raw signals: `[conv, BatchNorm, ReLU]` per width, then a projection.

  Each conv has kernel `kernel_size`, stride `stride` and PyTorch-style padding, so the
  time axis shrinks by `stride` per layer (rounded up).

  Attributes:
    features: Token width `d`.
    widths: Channels of each conv layer.
    kernel_size: Conv kernel length; at least `stride` so no sample is skipped.
    stride: Temporal stride of each conv layer.
    dtype: Compute dtype; parameters are float32.
    bn_axis_name: Mesh axis over which BatchNorm averages batch statistics, or None.
  """

  features: int = 512
  widths: Sequence[int] = (32, 64, 128, 256)
  kernel_size: int = 9
  stride: int = 4
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Encodes signals.

    Args:
      x: Float array of shape `[batch, time, channels]`.
      train: Use batch statistics in BatchNorm (and update the running averages, which
        requires `mutable=["batch_stats"]`).

    Returns:
      Tokens of shape `[batch, ceil(time / stride**len(widths)), features]`.
    """
    _check_signal(x)
    x = x.astype(self.dtype)
    for width in self.widths:
      x = resnet.conv(width, (self.kernel_size,), (self.stride,), self.dtype)(x)
      x = nn.relu(resnet.batch_norm(train, self.dtype, self.bn_axis_name)(x))
    return nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32)(x)


class SpectrogramResNet(nn.Module):
  """torchvision's 2-D ResNet over spectrograms, one input plane per signal channel.

  The spectrogram is laid out as an image of height = frequency and width = time; the
  stem is a 7x7 stride-2 conv and a 3x3 stride-2 max-pool, followed by the residual
  stages. Tokens are the last map averaged over frequency, so they stay ordered in time.

  Attributes:
    stage_sizes: Blocks per stage; `(2, 2, 2, 2)` is ResNet-18.
    features: Token width `d`, the last stage's width; 512 in ResNet-18. Smaller values
      shrink every stage proportionally.
    window: Spectrogram segment length.
    overlap: Spectrogram segment overlap.
    nfft: Spectrogram FFT length.
    mode: `"psd"` (power) or `"magnitude"`; see `spectrogram`.
    log_eps: Feed `log(spectrogram + log_eps)` (the power of EMG spans many decades); the
      linear spectrogram if None.
    dtype: Compute dtype; parameters are float32 and the spectrogram is computed in
      float32.
    bn_axis_name: Mesh axis over which BatchNorm averages batch statistics, or None.
  """

  stage_sizes: Sequence[int]
  features: int = 512
  window: int = 16
  overlap: int = 4
  nfft: int = 128
  mode: Literal["psd", "magnitude"] = "psd"
  log_eps: float | None = 1e-6
  dtype: jnp.dtype = jnp.float32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Encodes signals.

    Args:
      x: Float array of shape `[batch, time, channels]`.
      train: Use batch statistics in BatchNorm (and update the running averages, which
        requires `mutable=["batch_stats"]`).

    Returns:
      Tokens of shape `[batch, frames / 2**(len(stage_sizes) + 1), features]` (sizes
      rounded up), `frames = (time - overlap) // (window - overlap)`.
    """
    _check_signal(x)
    scale = 2 ** (len(self.stage_sizes) - 1)
    if self.features % scale:
      raise ValueError(f"features={self.features} must be a multiple of {scale}.")
    width = self.features // scale

    spec = spectrogram(jnp.swapaxes(x, 1, 2), self.window, self.overlap, self.nfft, self.mode)
    if self.log_eps is not None:
      spec = jnp.log(spec + self.log_eps)
    x = jnp.moveaxis(spec, 1, -1).astype(self.dtype)  # [batch, freq, frames, channels]

    x = resnet.conv(width, (7, 7), (2, 2), self.dtype, name="stem")(x)
    x = nn.relu(resnet.batch_norm(train, self.dtype, self.bn_axis_name, name="stem_bn")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    x = resnet.ResNetStages(
      self.stage_sizes,
      width,
      ndim=2,
      dtype=self.dtype,
      bn_axis_name=self.bn_axis_name,
      name="stages",
    )(x, train)
    return x.mean(axis=1)


SpecResNet18 = functools.partial(SpectrogramResNet, stage_sizes=(2, 2, 2, 2))
