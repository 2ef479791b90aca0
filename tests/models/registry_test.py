"""Tests for mtpkd_jax.models.registry."""

import flax.linen as nn
import jax.numpy as jnp
import pytest

from mtpkd_jax import models
from mtpkd_jax.models import audio, mlp, physio, registry, sequence, video


@pytest.mark.parametrize(
  "name, cls, kwargs",
  [
    ("r3d18", video.VideoResNet, dict(factorized=False, stage_sizes=(2, 2, 2, 2))),
    ("r2plus1d18", video.VideoResNet, dict(factorized=True, stage_sizes=(2, 2, 2, 2))),
    ("cnn3d_small", video.CNN3DSmall, {}),
    ("frame_transformer", video.FrameTransformer, {}),
    ("conv1d", physio.Conv1DEncoder, {}),
    ("spec_resnet18", physio.SpectrogramResNet, dict(stage_sizes=(2, 2, 2, 2))),
    ("audio_transformer", audio.AudioTransformer, {}),
    ("mlp", mlp.MLPEncoder, {}),
    ("transformer", sequence.TransformerEncoder, {}),
    ("bigru", sequence.BiGRUEncoder, {}),
    ("gru_transformer", sequence.GRUTransformerEncoder, {}),
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


@pytest.fixture
def restore_registry(monkeypatch):
  """Undoes the test's registrations."""
  monkeypatch.setattr(registry, "_ENCODERS", dict(registry._ENCODERS))


class _MyEncoder(nn.Module):
  features: int
  dtype: jnp.dtype = jnp.float32

  def __call__(self, x, mask=None, train=False):
    return x


def test_registered_encoder_is_built_by_name(restore_registry):
  models.register_encoder("my_encoder", _MyEncoder)
  module = models.get_encoder("my_encoder", features=3)
  assert isinstance(module, _MyEncoder) and module.features == 3


def test_registering_a_known_name_needs_override(restore_registry):
  with pytest.raises(ValueError, match="'mlp' is already registered.*override=True"):
    models.register_encoder("mlp", _MyEncoder)
  assert isinstance(models.get_encoder("mlp", features=3), mlp.MLPEncoder)
  models.register_encoder("mlp", _MyEncoder, override=True)
  assert isinstance(models.get_encoder("mlp", features=3), _MyEncoder)


def test_constructor_must_be_callable(restore_registry):
  with pytest.raises(ValueError, match="constructor must be callable"):
    models.register_encoder("my_encoder", "MyEncoder")
