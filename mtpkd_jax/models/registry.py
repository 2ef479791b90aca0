"""Encoders by name: the one place to add a new one (or `register_encoder` from outside)."""

from collections.abc import Callable

import flax.linen as nn

from mtpkd_jax.models import audio, mlp, physio, sequence, video

_ENCODERS: dict[str, Callable[..., nn.Module]] = {
  "r3d18": video.R3D18,
  "r2plus1d18": video.R2Plus1D18,
  "cnn3d_small": video.CNN3DSmall,
  "frame_transformer": video.FrameTransformer,
  "conv1d": physio.Conv1DEncoder,
  "spec_resnet18": physio.SpecResNet18,
  "audio_transformer": audio.AudioTransformer,
  "mlp": mlp.MLPEncoder,
  "transformer": sequence.TransformerEncoder,
  "bigru": sequence.BiGRUEncoder,
  "gru_transformer": sequence.GRUTransformerEncoder,
}


def get_encoder(name: str, **kwargs) -> nn.Module:
  """Builds an encoder `x -> tokens [batch, L, d]` by name.

  Args:
    name: One of `r3d18`, `r2plus1d18`, `cnn3d_small`, `frame_transformer` (video), `conv1d`,
      `spec_resnet18` (physiology), `audio_transformer` (audio), `mlp` (feature vectors),
      `transformer`, `bigru`, `gru_transformer` (padded feature sequences, called with a
      mask), or a name added with `register_encoder`.
    **kwargs: The encoder's attributes, e.g. `features`, `dtype`, and `bn_axis_name` for
      the BatchNorm encoders (the video and physiology ones but `cnn3d_small`).

  Returns:
    The unbound module.

  Raises:
    ValueError: If `name` is unknown.
  """
  if name not in _ENCODERS:
    raise ValueError(f"Unknown encoder {name!r}; known: {', '.join(sorted(_ENCODERS))}.")
  return _ENCODERS[name](**kwargs)


def register_encoder(
  name: str, constructor: Callable[..., nn.Module], *, override: bool = False
) -> None:
  """Makes an encoder buildable by `get_encoder(name, ...)`, e.g. from a user's own module.

  Args:
    name: The name configs use.
    constructor: Called with the encoder's attributes (at least `features` and `dtype`);
      returns an unbound module mapping `x` (and `train`, and `mask` for padded sequences)
      to tokens of shape `[batch, L, features]`. A module class is one.
    override: Replace an encoder already registered under `name`.

  Raises:
    ValueError: If `name` is already registered and `override` is False, or `constructor`
      is not callable.
  """
  if not callable(constructor):
    raise ValueError(f"constructor must be callable, got {constructor!r}.")
  if name in _ENCODERS and not override:
    raise ValueError(
      f"Encoder {name!r} is already registered ({_ENCODERS[name]!r}); pass override=True to "
      "replace it."
    )
  _ENCODERS[name] = constructor
