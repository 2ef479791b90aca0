"""Tests for mtpkd_jax.models.registry."""

import jax.numpy as jnp
import pytest

from mtpkd_jax import models
from mtpkd_jax.models import audio, physio, video


@pytest.mark.parametrize(
  "name, cls, kwargs",
  [
    ("r3d18", video.VideoResNet, dict(factorized=False, stage_sizes=(2, 2, 2, 2))),
    ("r2plus1d18", video.VideoResNet, dict(factorized=True, stage_sizes=(2, 2, 2, 2))),
    ("cnn3d_small", video.CNN3DSmall, {}),
    ("conv1d", physio.Conv1DEncoder, {}),
    ("spec_resnet18", physio.SpectrogramResNet, dict(stage_sizes=(2, 2, 2, 2))),
    ("audio_transformer", audio.AudioTransformer, {}),
  ],
)
def test_get_encoder_builds_by_name_and_forwards_kwargs(name, cls, kwargs):
  module = models.get_encoder(name, features=32, dtype=jnp.bfloat16)
  assert isinstance(module, cls)
  assert (module.features, module.dtype) == (32, jnp.bfloat16)
  for key, value in kwargs.items():
    assert getattr(module, key) == value


def test_unknown_encoder_lists_known_ones():
  with pytest.raises(ValueError, match="r3d18.*spec_resnet18"):
    models.get_encoder("resnet50")
