"""Every stage's settings, typed: ``config.stages`` read and checked once.

:class:`Stages` has one field per stage kind of the graph (:mod:`~mtpkd_jax.methods.graph`),
each the typed form of its ``config.stages.<kind>`` section: how long the stage trains, in
what batches, at what learning rates, and the switches of its network.
:func:`stages_from_config` builds it, naming the field (as ``--config.<field>`` spells it) of
the first bad entry; a run's :class:`~mtpkd_jax.methods.context.Context` holds the result.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from mtpkd_jax.methods import typed

TNET_LOSSES = ("mse", "mmd")
# The student's network: the release's fusion with the frozen T-Nets, or the visual-only one.
STUDENT_NETWORKS = ("fusion", "visual")


@dataclasses.dataclass(frozen=True)
class StageSettings:
  """What every stage has.

  Attributes:
    epochs: passes over the training examples.
    min_steps: the fewest optimizer steps the stage takes: a training split too small for
      ``epochs`` to reach them is passed over more often (whole epochs), so that a small
      dataset's stages train as long as a large one's.
    batch_size: examples per (global) batch.
    learning_rate: Adam's learning rate of what the stage trains.
  """

  epochs: int = typed.at_least(1)
  min_steps: int = typed.at_least(0)
  batch_size: int = typed.at_least(1)
  learning_rate: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class JointSettings(StageSettings):
  """Stage 1: the joint teacher and the T-Nets.

  Attributes:
    tnet_hidden: the T-Nets' hidden widths.
    tnet_loss: ``mse`` or ``mmd``: what a T-Net's output is trained to match.
    tnet_weight: the T-Nets' loss weight beside the task's.
    modality_dropout: per example, the chance that the fusion trains with one modality's
      tokens zeroed.
    finetune_backbones: train the stage-0 backbones with the fusion.
    backbone_learning_rate: their learning rate then.
  """

  tnet_hidden: tuple[int, ...] = typed.tuple_at_least(1)
  tnet_loss: str = typed.choice(TNET_LOSSES)
  tnet_weight: float
  modality_dropout: float = typed.fraction()
  finetune_backbones: bool
  backbone_learning_rate: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class AlignmentSettings(StageSettings):
  """Stage 2 (MT-PKDOT): ``fusion_learning_rate``, the joint fusion's, trained with it."""

  fusion_learning_rate: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class StudentSettings(StageSettings):
  """Stage 3: the student's network, and whether the fusion student trains the backbone.

  Attributes:
    network: ``fusion`` (the research release's student: the visual backbone's tokens and
      the frozen T-Nets' into a fusion trained from scratch) or ``visual`` (the visual-only
      network, encoder and head, from visual-only's initial variables, its embedding the
      pooled tokens): with it, a student differs from visual-only by its distillation term
      and its stage's schedule alone.
    finetune_visual: train the fusion student's visual backbone with it, from the teachers'
      (the ``visual`` network always trains its encoder).
    backbone_learning_rate: its learning rate then.
    term_grad_norms: log the gradient norm of each weighted loss term every step
      (``train/grad_norm/<term>``), at the cost of a backward pass per term.
  """

  network: str = typed.choice(STUDENT_NETWORKS)
  finetune_visual: bool
  backbone_learning_rate: float = typed.positive()
  term_grad_norms: bool


@dataclasses.dataclass(frozen=True)
class CMKTSettings(StageSettings):
  """CMKT's stage 2: ``head_learning_rate``, the strong head's when the method fine-tunes it."""

  head_learning_rate: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class Stages:
  """The settings of every stage kind, by the kind's name (``config.stages.<kind>``)."""

  unimodal: StageSettings
  joint: JointSettings
  alignment: AlignmentSettings
  student: StudentSettings
  cmkt: CMKTSettings


def stages_from_config(config: ml_collections.ConfigDict) -> Stages:
  """``config.stages``, typed and checked.

  Raises:
    ValueError: naming the entry (``config.stages.<kind>.<key>``), what it must be and what
      it is: a section or entry missing or unknown, an ``epochs`` or ``batch_size`` below 1, a
      learning rate <= 0, a ``modality_dropout`` outside [0, 1), an unknown ``tnet_loss``...
  """
  return typed.from_section(Stages, config.stages, typed.config_fail("stages."))
