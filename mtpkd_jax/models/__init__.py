"""Flax linen models: modality and feature encoders, the fusion block and small heads."""

from mtpkd_jax.models.audio import AudioTransformer
from mtpkd_jax.models.fusion import FusionBlock, Gate
from mtpkd_jax.models.heads import Adapter, Head, TNet
from mtpkd_jax.models.mlp import MLPEncoder
from mtpkd_jax.models.physio import Conv1DEncoder, SpecResNet18, SpectrogramResNet, spectrogram
from mtpkd_jax.models.registry import get_encoder, register_encoder
from mtpkd_jax.models.sequence import BiGRUEncoder, GRUTransformerEncoder, TransformerEncoder
from mtpkd_jax.models.translation import SequenceDecoder
from mtpkd_jax.models.video import R3D18, CNN3DSmall, R2Plus1D18, VideoResNet

__all__ = [
  "Adapter",
  "AudioTransformer",
  "BiGRUEncoder",
  "CNN3DSmall",
  "Conv1DEncoder",
  "FusionBlock",
  "GRUTransformerEncoder",
  "Gate",
  "Head",
  "MLPEncoder",
  "R2Plus1D18",
  "R3D18",
  "SequenceDecoder",
  "SpecResNet18",
  "SpectrogramResNet",
  "TNet",
  "TransformerEncoder",
  "VideoResNet",
  "get_encoder",
  "register_encoder",
  "spectrogram",
]
