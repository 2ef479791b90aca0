"""What a dataset holds, described once and read by every layer.

A :class:`Schema` names a dataset's modalities (each with a kind and a per-example shape),
its task (classification with class names, or regression with 1..K named targets) and
whether examples carry a subject id and an official split. Below ``experiments/`` no code
names a modality or a target: it reads them from the schema, and the config picks the roles
(the test-time ``visual`` modality and the ``privileged`` ones) by name.

Every dataset is read as the same *canonical examples* (see :mod:`mtpkd_jax.data.pipeline`)::

  | key | per example | meaning |
  |---|---|---|
  | ``<modality>`` | the modality's ``shape`` | one per modality |
  | ``mask_<modality>`` | bool ``[L]`` | valid steps of a masked sequence modality |
  | ``y`` | int ``[]`` / float ``[K]`` | class index, or the K regression targets |
  | ``subject`` | int ``[]`` | subject id (when the dataset has subjects) |
  | ``split`` | int ``[]`` | ``SPLITS`` index (when the dataset has an official split) |
  | ``index`` | int ``[]`` | position of the example in the dataset, ``0..N-1`` |
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("video", "signal", "sequence", "vector")
TASKS = ("classification", "regression")
# An official split's values, in the order of their integer codes.
SPLITS = ("train", "val", "test")


def mask_key(modality: str) -> str:
  """The key of a modality's validity mask."""
  return f"mask_{modality}"


@dataclasses.dataclass(frozen=True)
class Modality:
  """One input modality.

  Attributes:
    name: its key, e.g. ``"video"``, ``"face"``, ``"eda"``.
    kind: ``video`` (``[T, H, W, C]``), ``signal`` (``[T, C]`` raw samples), ``sequence``
      (``[L, d]`` feature steps) or ``vector`` (``[d]``).
    shape: per-example shape.
    dtype: numpy dtype name of the stored array.
    masked: whether examples carry ``mask_<name>``, bool ``[L]`` (sequences only).
  """

  name: str
  kind: str
  shape: tuple[int, ...]
  dtype: str = "float32"
  masked: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Modality {self.name!r}: `kind` must be one of {KINDS}, got {self.kind!r}.")
    rank = {"video": 4, "signal": 2, "sequence": 2, "vector": 1}[self.kind]
    if len(self.shape) != rank:
      raise ValueError(
        f"Modality {self.name!r} of kind {self.kind!r} needs a per-example shape of rank "
        f"{rank}, got {self.shape}."
      )
    if self.masked and self.kind != "sequence":
      raise ValueError(f"Modality {self.name!r}: only sequences can be masked, not {self.kind!r}.")


@dataclasses.dataclass(frozen=True)
class Task:
  """What is predicted.

  Attributes:
    kind: ``classification`` or ``regression``.
    names: class names (classification) or target names (regression), in output order.
  """

  kind: str
  names: tuple[str, ...]

  def __post_init__(self):
    if self.kind not in TASKS:
      raise ValueError(f"`task` must be one of {TASKS}, got {self.kind!r}.")
    if len(self.names) < (2 if self.kind == "classification" else 1):
      raise ValueError(f"A {self.kind} task needs more names, got {self.names}.")

  @property
  def num_outputs(self) -> int:
    """Logits per example, or regression targets."""
    return len(self.names)


@dataclasses.dataclass(frozen=True)
class Schema:
  """A dataset's modalities, task, subjects and split.

  Attributes:
    modalities: the input modalities.
    task: the task.
    has_subject: whether examples carry ``subject`` (subject-independent folds need it).
    has_split: whether examples carry an official ``split``.
  """

  modalities: tuple[Modality, ...]
  task: Task
  has_subject: bool = True
  has_split: bool = False

  def __post_init__(self):
    names = [m.name for m in self.modalities]
    if len(set(names)) != len(names) or not names:
      raise ValueError(f"Modality names must be unique and non-empty, got {names}.")

  @property
  def names(self) -> tuple[str, ...]:
    """The modalities' names, in order."""
    return tuple(m.name for m in self.modalities)

  @property
  def example_bytes(self) -> int:
    """Bytes of one example's modalities in memory."""
    return sum(math.prod(m.shape) * np.dtype(m.dtype).itemsize for m in self.modalities)

  def modality(self, name: str) -> Modality:
    """The modality called ``name``; a ``ValueError`` lists the known ones otherwise."""
    for m in self.modalities:
      if m.name == name:
        return m
    raise ValueError(f"Unknown modality {name!r}; this dataset has {list(self.names)}.")

  def input_keys(self, name: str) -> tuple[str, ...]:
    """The example keys a model of modality ``name`` reads: the array and its mask."""
    modality = self.modality(name)
    return (name, mask_key(name)) if modality.masked else (name,)

  def check_roles(self, visual: str, privileged: Sequence[str]) -> None:
    """Checks the config's ``visual`` and ``privileged`` modality names.

    Raises:
      ValueError: naming the config field, if a name is not a modality of the dataset, the
        visual modality is also privileged, or a name repeats.
    """
    for field, names in (("visual", [visual]), ("privileged", list(privileged))):
      for name in names:
        if name not in self.names:
          raise ValueError(
            f"`config.{field}` names {name!r}, which is not a modality of this dataset; "
            f"its modalities are {list(self.names)}."
          )
    if visual in privileged or len(set(privileged)) != len(privileged):
      raise ValueError(
        f"`config.privileged` {tuple(privileged)} must be distinct modalities other than "
        f"`config.visual` {visual!r}."
      )

  def to_json(self) -> dict[str, Any]:
    """The schema as JSON-compatible values (``schema.json``)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: Mapping[str, Any]) -> Schema:
    """The schema that :meth:`to_json` wrote."""
    modalities = tuple(Modality(**{**m, "shape": tuple(m["shape"])}) for m in value["modalities"])
    task = Task(value["task"]["kind"], tuple(value["task"]["names"]))
    return cls(modalities, task, value["has_subject"], value["has_split"])

  def fingerprint(self) -> str:
    """A short hash of the schema's JSON: equal schemas, equal fingerprints."""
    return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]
