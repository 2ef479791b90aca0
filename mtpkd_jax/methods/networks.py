"""The trainable network of each stage, composed from :mod:`mtpkd_jax.models`.

Stage 0 trains a :class:`Unimodal` encoder + head per modality. The later stages work on
the backbones' tokens: :class:`JointTeacher` (fusion ``F_J`` plus one T-Net per privileged
modality), :class:`Alignment` (``F_J`` with per-modality adapters and heads, MT-PKDOT's
stage 2) and :class:`Student` (fusion ``F_S`` over the visual tokens and the hallucinated
privileged embeddings). Frozen backbones run once, outside these networks; a backbone that
is fine-tuned is given to :class:`JointTeacher` or :class:`Student` as a submodule, which
then takes raw inputs. CMKT's stage 2 trains a :class:`WeakModel` (encoder ``E_w``, decoder
``D`` and head ``C``) on the weak modality alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax import models
from mtpkd_jax.models import sequence


def call_encoder(encoder: nn.Module, inputs, train: bool = False) -> jax.Array:
  """``encoder(inputs)``: an array, or ``{"x": [B, L, d], "mask": [B, L]}`` for a masked sequence.

  Also usable as ``encoder.apply(variables, inputs, method=call_encoder)``.
  """
  if isinstance(inputs, Mapping):
    return encoder(inputs["x"], mask=inputs["mask"], train=train)
  return encoder(inputs, train=train)


def call_sequence(encoder: nn.Module, inputs, train: bool = False):
  """``(per-step outputs [B, L, d], valid steps [B, L])`` of ``encoder`` on ``inputs``.

  A sequence encoder's ``sequence`` (zero on padded steps); for any other encoder, its tokens,
  all valid. Their masked mean is the encoder's pooled embedding either way. Also usable as
  ``encoder.apply(variables, inputs, method=call_sequence)``.
  """
  if not hasattr(encoder, "sequence"):
    tokens = call_encoder(encoder, inputs, train)
    return tokens, jnp.ones(tokens.shape[:2], bool)
  x, mask = (inputs["x"], inputs["mask"]) if isinstance(inputs, Mapping) else (inputs, None)
  mask = sequence.valid_mask(x, mask)
  return encoder.sequence(x, mask, train), mask


class Unimodal(nn.Module):
  """Encoder + linear head: ``x -> (outputs [B, C], tokens [B, L, d])``."""

  encoder: nn.Module
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Returns ``(outputs [B, C], tokens [B, L, d])``.

    Args:
      x: the modality's input batch (a dict ``{"x", "mask"}`` for a masked sequence).
      train: train mode (dropout, batch statistics).
    """
    tokens = call_encoder(self.encoder, x, train)
    return models.Head(self.num_outputs, name="head")(tokens.mean(axis=1)), tokens


class VisualStudent(nn.Module):
  """The visual-only network as a student: ``x -> (outputs [B, C], z_S [B, d])``.

  :class:`Unimodal`'s encoder and head, under the same names (its variables are
  visual-only's), with the pooled tokens as the embedding the distillation terms compare.
  """

  encoder: nn.Module
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array, hallucinate=None, train: bool = False):
    """Returns ``(outputs [B, C], z_S [B, d])``; ``hallucinate`` is not used (no T-Nets).

    Args:
      x: the visual modality's input batch.
      hallucinate: ignored: the fusion student's T-Nets.
      train: train mode.
    """
    del hallucinate
    z = call_encoder(self.encoder, x, train).mean(axis=1)
    return models.Head(self.num_outputs, name="head")(z), z


class JointTeacher(nn.Module):
  """Fusion ``F_J`` over every modality's tokens, and the T-Nets ``H_m: f_v -> f̂_m``.

  Attributes:
    num_outputs: classes or regression targets.
    num_privileged: number of privileged modalities (one T-Net each).
    tnet_hidden: hidden widths of the T-Nets.
    dropout_rate: dropout of the fusion's attention layers.
    modality_dropout: the fusion's modality dropout (:class:`~mtpkd_jax.models.FusionBlock`).
    encoders: one backbone per modality (visual first), trained with the fusion; when
      given, :meth:`__call__` takes raw inputs instead of tokens.
  """

  num_outputs: int
  num_privileged: int
  tnet_hidden: Sequence[int] = (256,)
  dropout_rate: float = 0.1
  modality_dropout: float = 0.0
  encoders: Sequence[nn.Module] = ()

  def setup(self):
    """Builds the fusion block and one T-Net per privileged modality."""
    self.fusion = models.FusionBlock(
      self.num_outputs, dropout_rate=self.dropout_rate, modality_dropout=self.modality_dropout
    )
    self.tnets = [
      models.TNet(hidden_features=tuple(self.tnet_hidden), name=f"tnet{m}")
      for m in range(self.num_privileged)
    ]

  def __call__(self, inputs: Sequence[jax.Array], train: bool = False):
    """Returns ``(outputs [B, C], z_J [B, d], hallucinated [num_privileged, B, d], tokens)``.

    Args:
      inputs: the visual modality's tokens ``[B, L, d]`` first, then each privileged
        modality's (raw inputs when the network has ``encoders``).
      train: train mode (dropout, and the encoders' own train mode).
    """
    tokens = list(inputs)
    if self.encoders:
      tokens = [call_encoder(e, x, train) for e, x in zip(self.encoders, inputs, strict=True)]
    outputs, z = self.fusion(tokens, train=train)
    # The T-Nets learn on detached visual features (as the research release does): their
    # loss never trains a fine-tuned visual encoder.
    return outputs, z, self.hallucinate(jax.lax.stop_gradient(tokens[0])), tokens

  def hallucinate(self, visual_tokens: jax.Array) -> jax.Array:
    """``[B, L, d] -> [num_privileged, B, d]``: every T-Net on the pooled visual embedding."""
    pooled = visual_tokens.mean(axis=1)
    return jnp.stack([tnet(pooled) for tnet in self.tnets])


class Alignment(nn.Module):
  """MT-PKDOT stage 2: ``F_J`` plus an adapter ``A_m`` and a head ``h_m`` per modality."""

  num_outputs: int
  num_modalities: int
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, tokens: Sequence[jax.Array], train: bool = False):
    """Returns ``(joint outputs [B, C], z_J [B, d], adapted [M, B, d], head outputs [M, B, C])``."""
    outputs, z = models.FusionBlock(
      self.num_outputs, dropout_rate=self.dropout_rate, name="fusion"
    )(tokens, train=train)
    adapted = jnp.stack(
      [models.Adapter(name=f"adapter{m}")(t.mean(axis=1)) for m, t in enumerate(tokens)]
    )
    head_outputs = jnp.stack(
      [
        models.Head(self.num_outputs, name=f"head{m}")(adapted[m])
        for m in range(self.num_modalities)
      ]
    )
    return outputs, z, adapted, head_outputs


class Student(nn.Module):
  """Student fusion ``F_S(f_v, H(f_v)) -> (outputs [B, C], z_S [B, d])``.

  Attributes:
    num_outputs: classes or regression targets.
    dropout_rate: dropout of the fusion's attention layers.
    encoder: the visual backbone, trained with the student; when given, :meth:`__call__`
      takes the video instead of its tokens.
  """

  num_outputs: int
  dropout_rate: float = 0.1
  encoder: nn.Module | None = None

  @nn.compact
  def __call__(
    self,
    visual: jax.Array,
    hallucinate: Callable[[jax.Array], jax.Array],
    train: bool = False,
  ):
    """Fuses the visual tokens ``f_v [B, L, d]`` with the T-Nets' ``hallucinate(f_v)``.

    Args:
      visual: the visual tokens, or the video when the student has an ``encoder``.
      hallucinate: the frozen T-Nets, ``f_v -> [num_privileged, B, d]``.
      train: train mode.
    """
    tokens = visual if self.encoder is None else call_encoder(self.encoder, visual, train)
    return models.FusionBlock(self.num_outputs, dropout_rate=self.dropout_rate, name="fusion")(
      [tokens, *hallucinate(tokens)], train=train
    )


class WeakModel(nn.Module):
  """CMKT's weak-modality model: ``E_w``, the decoder ``D`` and the head ``C``.

  Attributes:
    encoder: the weak modality's encoder ``E_w``.
    decoder: ``D``, from ``E_w``'s sequence to the strong encoder's.
    num_outputs: classes or regression targets.
    align_features: width of a linear projection of ``pool(z_w)`` that the alignment loss
      compares (deep CCA's small output width); ``0``: ``pool(z_w)`` itself.
  """

  encoder: nn.Module
  decoder: nn.Module
  num_outputs: int
  align_features: int = 0

  @nn.compact
  def __call__(self, inputs, train: bool = False):
    """Returns ``(outputs [B, C], pool(z_w) [B, d], aligned [B, k], D(z_w) [B, L, d_s], mask)``.

    ``outputs`` is ``C(pool(E_w(x_w)))``, the test-time prediction; ``aligned`` is
    ``pool(z_w)`` or its projection; ``D(z_w)`` is used by the translation loss alone;
    ``mask [B, L]`` marks the valid steps.
    """
    z, mask = call_sequence(self.encoder, inputs, train)
    pooled = sequence.masked_mean(z, mask)[:, 0]
    outputs = models.Head(self.num_outputs, name="head")(pooled)
    aligned = pooled
    if self.align_features:
      aligned = nn.Dense(self.align_features, param_dtype=jnp.float32, name="align")(pooled)
    return outputs, pooled, aligned, self.decoder(z, mask, train=train), mask
