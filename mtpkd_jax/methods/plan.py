"""The stage graph: which stages a list of methods needs, and what each stage is built from.

MT-PKDOT: ``unimodal_<m>`` (stage 0) -> ``joint`` (stage 1) -> ``alignment`` (stage 2,
MT-PKDOT only) -> ``student_<method>`` (stage 3). CMKT: ``unimodal_<strong>`` (its stage 1,
the strong modality's encoder and head) -> ``cmkt_<method>`` (its stage 2, the weak
modality's model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mtpkd_jax.methods import registry


@dataclasses.dataclass(frozen=True)
class Plan:
  """The shared stages some methods need: backbones to train, joint teacher, alignment."""

  unimodal: tuple[str, ...]
  joint: bool
  alignment: bool


def plan(method_names: Sequence[str], modalities: Sequence[str], strong: str | None) -> Plan:
  """Which shared stages ``method_names`` need.

  Args:
    method_names: the methods (and variants) to train.
    modalities: the run's modalities, visual first.
    strong: CMKT's strong modality (``None`` when no CMKT method is asked for).
  """
  methods = [registry.get_method(name, modalities[0]) for name in method_names]
  joint = any(m.kind in ("teacher", "student") for m in methods)
  unimodal = [m.modality for m in methods if m.kind == "unimodal"]
  if joint:
    unimodal = [*modalities, *unimodal]
  if any(m.kind == "cmkt" for m in methods):
    unimodal.append(strong)
  return Plan(
    unimodal=tuple(dict.fromkeys(unimodal)),
    joint=joint,
    alignment=any(m.teacher == "aligned" for m in methods),
  )


def predecessors(stage: str, modalities: Sequence[str], strong: str | None) -> list[str]:
  """The stages whose saved outputs ``stage`` is built from (arguments as :func:`plan`)."""
  if stage.startswith("unimodal_"):
    return []
  if stage.startswith("cmkt_"):
    return [f"unimodal_{strong}"]
  backbones = [f"unimodal_{m}" for m in modalities]
  if stage == "joint":
    return backbones
  if stage == "alignment":
    return [*backbones, "joint"]
  method = registry.get_method(stage.removeprefix("student_"))
  return [*backbones, "joint", *(["alignment"] if method.teacher == "aligned" else [])]
