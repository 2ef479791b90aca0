"""Every method's parameters, typed: a ``config.method_params`` entry read and checked once.

Each student and CMKT method names the class of its parameters in the registry
(:class:`~mtpkd_jax.methods.registry.Method`); :func:`~mtpkd_jax.methods.registry.method_params`
builds it from the method's config entry with a variant's overrides, and checks it before
anything trains. Loss weights are fields (``alpha``, ``beta``, ...) that the method's
``weights`` name; a structural OT term's settings are :class:`StructuralOT`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mtpkd_jax import ot
from mtpkd_jax.losses import alignment, translation
from mtpkd_jax.methods import typed

# How MT-PKDOT weighs its candidate teachers (:func:`~mtpkd_jax.methods.registry.route`).
ROUTINGS = ("min_loss", "joint", "mean", "softmin")
# CMKT's classifier `C` in stage 2: the strong model's head frozen, fine-tuned, or a new one.
HEADS = ("frozen", "finetune", "new")


@dataclasses.dataclass(frozen=True)
class Student:
  """What every student method's parameters hold besides its loss terms' settings.

  Attributes:
    unlabelled: whether the distillation terms also see the training examples that
      ``config.label_budget`` leaves without a label: each batch of labelled examples is
      followed by a batch of those, whose teacher targets come from their privileged
      inputs and whose labels are never read (the task term sees the labelled rows alone).
      Without a label budget there are none, and it changes nothing.
    lr_scale: multiplies the student stage's learning rates
      (``config.stages.student.learning_rate`` and ``backbone_learning_rate``), so that a
      method's learning rate can be tuned like its other settings.
  """

  unlabelled: bool
  lr_scale: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class KD(Student):
  """A feature or relational KD student (``pkd``, ``spkd``, ``rkd``): task and kd weights."""

  alpha: float
  beta: float


@dataclasses.dataclass(frozen=True)
class LogitKD(KD):
  """``logit_kd``: KD on the joint teacher's outputs softened at ``temperature``."""

  temperature: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class StructuralOT:
  """The structural OT term (:func:`mtpkd_jax.ot.structural_ot_loss`).

  Attributes:
    anchors: ``least | most | all``: the neighbours each row of a similarity matrix keeps.
    k: neighbours per row, at least 1 and below the stage's batch size.
    backend: ``fused`` (this library's solver) or ``ott``.
    schedule: the Sinkhorn schedule, ``{"name": ..., "params": {...}}``
      (:func:`mtpkd_jax.ot.make_schedule`).
  """

  anchors: str = typed.choice(ot.similarity.ANCHOR_MODES)
  k: int = typed.at_least(1)
  backend: str = typed.choice(ot.divergence.BACKENDS)
  schedule: Mapping[str, Any]

  def sinkhorn_schedule(self) -> ot.Schedule:
    """The schedule this term solves its problems with."""
    return ot.make_schedule(self.schedule["name"], **self.schedule.get("params", {}))


@dataclasses.dataclass(frozen=True)
class PKDOT(StructuralOT, Student):
  """PKDOT: ``alpha`` task + ``beta`` structural OT + ``gamma`` centroid."""

  alpha: float
  beta: float
  gamma: float


@dataclasses.dataclass(frozen=True)
class MTPKDOT(PKDOT):
  """MT-PKDOT: PKDOT's terms over the teacher each batch is routed to.

  Attributes:
    routing: ``min_loss | joint | mean | softmin`` (at temperature ``tau``).
    tau: the softmin's temperature.
  """

  routing: str = typed.choice(ROUTINGS)
  tau: float = typed.positive()


@dataclasses.dataclass(frozen=True)
class CMKT(StructuralOT):
  """Every CMKT method's parameters; each method weighs the terms it names.

  Attributes:
    task_weight: the task term's weight.
    lambda_tr: the translation term's.
    lambda_al: the latent alignment term's.
    lambda_ot: the structural OT term's (``cmkt_ot``).
    translation_loss: ``l1 | mse``.
    alignment: ``dcca | cosine | mse``.
    ridge: deep CCA's ridge on each covariance.
    align_dim: deep CCA's width (0: the pooled embeddings themselves).
    head: ``frozen | finetune | new``: the strong model's head in the weak model.
    decoder: the sequence decoder's keyword arguments (:class:`mtpkd_jax.models.SequenceDecoder`).
  """

  task_weight: float
  lambda_tr: float
  lambda_al: float
  lambda_ot: float
  translation_loss: str = typed.choice(translation.KINDS)
  alignment: str = typed.choice(alignment.KINDS)
  ridge: float
  align_dim: int = typed.at_least(0)
  head: str = typed.choice(HEADS)
  decoder: Mapping[str, Any]


# A method's parameters, of whichever class its registry entry names.
Params = KD | StructuralOT
# A student method's.
StudentParams = KD | PKDOT
