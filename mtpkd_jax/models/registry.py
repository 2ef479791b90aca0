"""Encoders by name: the one place to add a new one."""

from collections.abc import Callable

import flax.linen as nn

from mtpkd_jax.models import audio, physio, video

_ENCODERS: dict[str, Callable[..., nn.Module]] = {
  "r3d18": video.R3D18,
  "r2plus1d18": video.R2Plus1D18,
  "cnn3d_small": video.CNN3DSmall,
  "frame_transformer": video.FrameTransformer,
  "conv1d": physio.Conv1DEncoder,
  "spec_resnet18": physio.SpecResNet18,
  "audio_transformer": audio.AudioTransformer,
}


def get_encoder(name: str, **kwargs) -> nn.Module:
  """Builds an encoder `x -> tokens [batch, L, d]` by name.

  Args:
    name: One of `r3d18`, `r2plus1d18`, `cnn3d_small`, `frame_transformer` (video), `conv1d`,
      `spec_resnet18` (physiology), `audio_transformer` (audio).
    **kwargs: The encoder's attributes, e.g. `features`, `dtype`, and `bn_axis_name` for
      the BatchNorm encoders (all but `cnn3d_small`, `frame_transformer`, `audio_transformer`).

  Returns:
    The unbound module.

  Raises:
    ValueError: If `name` is unknown.
  """
  if name not in _ENCODERS:
    raise ValueError(f"Unknown encoder {name!r}; known: {', '.join(sorted(_ENCODERS))}.")
  return _ENCODERS[name](**kwargs)
