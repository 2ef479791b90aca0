"""The stage graph: every kind of stage, what it needs, what trains it; planned once a run.

:data:`GRAPH` is the one table of stage kinds, in an order where every kind comes after the
kinds it needs:

========== ============ ================================= ===============================
kind       one per      needs                             trained by
========== ============ ================================= ===============================
unimodal   modality     nothing                           :mod:`~mtpkd_jax.methods.unimodal`
joint      run          every modality's ``unimodal``     :mod:`~mtpkd_jax.methods.joint`
alignment  run          the ``unimodal`` ones, ``joint``  :mod:`~mtpkd_jax.methods.alignment`
student    method       the same, and ``alignment`` for   :mod:`~mtpkd_jax.methods.students`
                        a student of the aligned teachers
cmkt       method       the strong modality's             :mod:`~mtpkd_jax.methods.cmkt`
                        ``unimodal``
========== ============ ================================= ===============================

A method is trained by one stage (:data:`TRAINED_BY`, by the registry's method kinds:
``<m>_only`` by ``unimodal_<m>``, ``joint_teacher`` by ``joint``, a student or CMKT method
by a stage of its own). :func:`plan` lists the stages a list of methods needs, each with its
predecessors, in the table's order; :func:`train` trains them in that order. Every stage
saves its output under ``<workdir>/<stage>/output`` and loads its predecessors from there,
never from memory, and records what it was built from, its predecessors included
(:meth:`~mtpkd_jax.methods.context.Context.provenance`), so that a changed one is retrained.

Adding a stage kind is one :class:`Kind` entry here, with its trainer, and its settings
(:class:`mtpkd_jax.methods.settings.Stages` and ``config.stages``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from mtpkd_jax.methods import alignment, cmkt, joint, registry, students, unimodal
from mtpkd_jax.methods.context import Context, Memo, Stage

# A stage, by kind and subject, before its needs are known.
Key = tuple[str, str | None]


@dataclasses.dataclass(frozen=True)
class Roles:
  """The run's modalities, visual first, and CMKT's strong one (``None`` without CMKT)."""

  modalities: tuple[str, ...]
  strong: str | None = None

  @classmethod
  def of(cls, ctx: Context) -> Roles:
    """The roles of a run's context."""
    return cls(ctx.modalities, ctx.strong)


@dataclasses.dataclass(frozen=True)
class Kind:
  """A kind of stage.

  Attributes:
    name: the kind, which names its stages (``<name>_<subject>`` or ``<name>``) and its
      settings (``config.stages.<name>``).
    per: ``modality``, ``method`` or ``run``: what a stage of the kind is one of.
    needs: ``needs(roles, subject) -> ((kind, subject), ...)``: the stages a stage of the
      kind is built from.
    train: ``train(ctx, memo, stage) -> output``: trains (or resumes) one stage.
  """

  name: str
  per: str
  needs: Callable[[Roles, str | None], tuple[Key, ...]]
  train: Callable[[Context, Memo, Stage], dict]


def _backbones(roles: Roles) -> tuple[Key, ...]:
  return tuple(("unimodal", m) for m in roles.modalities)


def _student_needs(roles: Roles, method: str) -> tuple[Key, ...]:
  aligned = registry.get_method(method).teacher == "aligned"
  return (*_backbones(roles), ("joint", None), *((("alignment", None),) if aligned else ()))


GRAPH = (
  Kind("unimodal", "modality", lambda roles, modality: (), unimodal.train_unimodal),
  Kind("joint", "run", lambda roles, _: _backbones(roles), joint.train_joint),
  Kind(
    "alignment",
    "run",
    lambda roles, _: (*_backbones(roles), ("joint", None)),
    alignment.train_alignment,
  ),
  Kind("student", "method", _student_needs, students.train_student),
  Kind("cmkt", "method", lambda roles, _: (("unimodal", roles.strong),), cmkt.train_cmkt),
)
KINDS = {kind.name: kind for kind in GRAPH}
# The stage kind that trains each kind of method of the registry.
TRAINED_BY = {"unimodal": "unimodal", "teacher": "joint", "student": "student", "cmkt": "cmkt"}


def stage(roles: Roles, kind: str, subject: str | None = None) -> Stage:
  """The stage ``kind`` of ``subject`` (a modality, a method, or ``None``), with its needs."""
  needs = KINDS[kind].needs(roles, subject)
  return Stage(kind, subject, tuple(Stage(k, s).name for k, s in needs))


def plan(method_names: Sequence[str], roles: Roles) -> list[Stage]:
  """The stages ``method_names`` need, each once, in the order they are trained.

  The kinds come in :data:`GRAPH`'s order; stages of one kind in the order the methods
  first need them.
  """
  keys: dict[Key, None] = {}

  def add(key: Key) -> None:
    for need in KINDS[key[0]].needs(roles, key[1]):
      add(need)
    keys.setdefault(key)

  for name in method_names:
    method = registry.get_method(name, roles.modalities[0])
    kind = KINDS[TRAINED_BY[method.kind]]
    add((kind.name, {"modality": method.modality, "method": name, "run": None}[kind.per]))
  order = [kind.name for kind in GRAPH]
  return [stage(roles, k, s) for k, s in sorted(keys, key=lambda key: order.index(key[0]))]


def train_stage(ctx: Context, memo: Memo, kind: str, subject: str | None = None) -> dict:
  """Trains (or resumes) one stage of ``ctx``'s run; returns its output."""
  return KINDS[kind].train(ctx, memo, stage(Roles.of(ctx), kind, subject))


def train(ctx: Context, memo: Memo, method_names: Sequence[str]) -> None:
  """Trains (or resumes) every stage ``method_names`` need, in :func:`plan`'s order."""
  for planned in plan(method_names, Roles.of(ctx)):
    KINDS[planned.kind].train(ctx, memo, planned)
