"""The stages of every method, trained in order: what a list of methods needs, once per run.

``unimodal_<m>`` (stage 0, :mod:`~mtpkd_jax.methods.unimodal`) -> ``joint`` (stage 1: fusion
+ T-Nets, :mod:`~mtpkd_jax.methods.joint`) -> ``alignment`` (stage 2, MT-PKDOT only,
:mod:`~mtpkd_jax.methods.alignment`) -> ``student_<method>`` (stage 3,
:mod:`~mtpkd_jax.methods.students`); :mod:`~mtpkd_jax.methods.plan` says which a list of
methods needs. Every stage saves its output under ``<workdir>/<stage>/output`` and **loads
its predecessors from there**, never from memory: a stage whose predecessor was not saved
stops with ``FileNotFoundError``. Each records what it was built from and is retrained when
that changes (:mod:`mtpkd_jax.train.provenance`).

By default the backbones are frozen from stage 1 on (the research release's default), so the
later stages run on the backbones' cached tokens (:mod:`~mtpkd_jax.methods.backbones`).
Config switches fine-tune them instead: ``stages.joint.finetune_backbones`` trains every
backbone with the joint teacher, and ``stages.student.finetune_visual`` trains the visual
backbone with each student, starting from the teachers' visual backbone; each has its own
``backbone_learning_rate``.

CMKT's stages (:mod:`~mtpkd_jax.methods.cmkt`) are stage 0's model of the strong modality
(``unimodal_<strong>``), then one ``cmkt_<method>`` stage per CMKT method: the weak
(test-time) modality's model.
"""

from __future__ import annotations

from collections.abc import Sequence

from mtpkd_jax.methods import plan, registry
from mtpkd_jax.methods.alignment import train_alignment
from mtpkd_jax.methods.cmkt import train_cmkt
from mtpkd_jax.methods.context import Context, Memo
from mtpkd_jax.methods.joint import train_joint
from mtpkd_jax.methods.students import train_student
from mtpkd_jax.methods.unimodal import train_unimodal


def train(ctx: Context, memo: Memo, method_names: Sequence[str]) -> None:
  """Trains (or resumes) every stage ``method_names`` need, shared stages first."""
  needed = plan.plan(method_names, ctx.modalities, ctx.strong)
  for modality in needed.unimodal:
    train_unimodal(ctx, modality)
  if needed.joint:
    train_joint(ctx, memo)
  if needed.alignment:
    train_alignment(ctx, memo)
  for name in method_names:
    kind = registry.get_method(name, ctx.config.visual).kind
    if kind == "student":
      train_student(ctx, memo, name)
    elif kind == "cmkt":
      train_cmkt(ctx, memo, name)
