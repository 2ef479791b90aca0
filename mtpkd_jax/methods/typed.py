"""Frozen dataclasses read from a config section, each entry checked once.

A settings class (a stage's :mod:`~mtpkd_jax.methods.settings`, a method's
:mod:`~mtpkd_jax.methods.params`) declares its entries as dataclass fields: the annotation
gives the kind of value (``int``, ``float``, ``bool``, ``str``, a tuple of integers, a
mapping, or a nested settings class), and :func:`choice`, :func:`at_least` and
:func:`fraction` narrow it. :func:`from_section` builds one from a config section and calls
``fail(path, expected, value)``, whose error names the entry's config path, on the first
entry that is missing, unknown or out of bounds.
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import ml_collections

Fail = Callable[[str, str, Any], NoReturn]


def is_int(value) -> bool:
  """An integer that is not a ``bool``."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
  """A real number that is not a ``bool``."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _entry(check: Callable[[Any], bool], expected: str):
  return dataclasses.field(metadata={"check": check, "expected": expected})


def choice(values: Sequence[str]):
  """A field that takes one of ``values``."""
  values = tuple(values)
  return _entry(lambda v: v in values, f"one of {values}")


def at_least(low: int):
  """An integer field ``>= low``."""
  return _entry(lambda v: is_int(v) and v >= low, f"an integer >= {low}")


def positive():
  """A number field ``> 0`` (a learning rate, a temperature)."""
  return _entry(lambda v: is_real(v) and v > 0, "a number > 0")


def tuple_at_least(low: int):
  """A tuple field of integers ``>= low`` (layer widths, label budgets)."""
  return _entry(
    lambda v: isinstance(v, tuple) and all(is_int(h) and h >= low for h in v),
    f"a tuple of integers >= {low}",
  )


def fraction():
  """A number field in ``[0, 1)``: a dropout rate or a chance."""
  return _entry(lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)")


# What an annotation alone asks of a value, and how the error says it.
_KINDS = {
  int: (is_int, "an integer"),
  float: (is_real, "a number"),
  bool: (lambda v: isinstance(v, bool), "true or false"),
  str: (lambda v: isinstance(v, str), "a string"),
  tuple[int, ...]: (
    lambda v: isinstance(v, tuple) and all(is_int(h) for h in v),
    "a tuple of integers",
  ),
  Mapping[str, Any]: (lambda v: isinstance(v, Mapping), "a dict"),
}


def _plain(value):
  """``value`` with config dicts as dicts and lists as tuples."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(value)
  return value


def config_fail(prefix: str = "") -> Fail:
  """A ``fail`` for sections of the experiment config at ``config.<prefix>``.

  Its ``ValueError`` names the entry as ``--config.<field>`` sets it and says that nothing was
  trained or moved (the config is checked before the workdir is touched).
  """

  def fail(path: str, expected: str, value) -> NoReturn:
    field = f"{prefix}{path}"
    raise ValueError(
      f"`config.{field}` must be {expected}, got {value!r}: set --config.{field} (nothing was "
      "trained or moved)."
    )

  return fail


def from_section(cls: type, section: Mapping[str, Any], fail: Fail, prefix: str = "") -> Any:
  """``cls`` built from ``section``; ``fail(path, expected, value)`` on a bad entry.

  Args:
    cls: a frozen dataclass whose fields are the section's entries.
    section: a ``ConfigDict`` or mapping with exactly the fields of ``cls``.
    fail: raises the error of the entry at ``path`` (dotted below the section), which must
      be ``expected`` and is ``value`` (``None`` when it is missing).
    prefix: the path of ``section`` below the one ``fail`` names (for nested classes).

  Returns:
    The settings, with nested sections as dicts (or their own classes) and sequences as
    tuples.
  """
  types = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  for key in section:
    if key not in names:
      fail(f"{prefix}{key}", f"one of the known entries {names} (no entry {key!r})", section[key])
  values = {}
  for field in dataclasses.fields(cls):
    path = f"{prefix}{field.name}"
    if field.name not in section:
      fail(path, "set (the entry is missing)", None)
    value = section[field.name]
    kind = types[field.name]
    if dataclasses.is_dataclass(kind):
      values[field.name] = from_section(kind, value, fail, f"{path}.")
      continue
    value = _plain(value)
    check, expected = _KINDS[kind]
    if "check" in field.metadata:
      check, expected = field.metadata["check"], field.metadata["expected"]
    if not check(value):
      fail(path, expected, value)
    values[field.name] = value
  return cls(**values)
