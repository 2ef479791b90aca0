"""Random-access tables of examples: arrays in memory, records on disk, and their joins.

A table has ``len(table)`` examples and named columns (``table.keys``);
``table.take(indices, keys)`` returns ``{key: array [len(indices), ...]}`` for those examples
only. The data pipeline, the stages and evaluation read every dataset through this one
interface, so a dataset that does not fit in memory is read batch by batch from its
``array_record`` files (:class:`RecordTable`) exactly as a small one is sliced in memory
(:class:`ArrayTable`), with the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np


class Table:
  """The interface; subclasses set ``keys`` and implement ``__len__`` and ``_take``."""

  keys: tuple[str, ...]

  def __len__(self) -> int:
    raise NotImplementedError

  def _take(self, indices: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def take(self, indices: Any, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The columns ``keys`` (default: all) of the examples ``indices``.

    Args:
      indices: Integer array of shape ``[n]`` with values in ``[0, len(self))``.
      keys: Column names; ``None`` for every column.

    Returns:
      ``{key: array of shape [n, ...]}``.

    Raises:
      ValueError: on an unknown key or an index out of range.
    """
    keys = self.keys if keys is None else tuple(keys)
    if unknown := [k for k in keys if k not in self.keys]:
      raise ValueError(f"Unknown columns {unknown}; this table has {list(self.keys)}.")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and not (0 <= indices.min() and indices.max() < len(self)):
      raise ValueError(
        f"Indices must be in [0, {len(self)}), got {indices.min()}..{indices.max()}."
      )
    return self._take(indices, keys)

  def select(self, keys: Sequence[str]) -> Table:
    """A view with the columns ``keys`` only."""
    return join(self, keys=keys)

  def chunks(
    self, indices: np.ndarray, chunk_size: int, keys: Sequence[str] | None = None
  ) -> Iterator[dict[str, np.ndarray]]:
    """``take`` of consecutive chunks of ``indices``: what fits in memory at once."""
    indices = np.asarray(indices)
    for start in range(0, len(indices), chunk_size):
      yield self.take(indices[start : start + chunk_size], keys)


class ArrayTable(Table):
  """Columns held in memory as arrays with a common leading ``[N]`` axis."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    lengths = {k: len(v) for k, v in arrays.items()}
    if not lengths or len(set(lengths.values())) != 1:
      raise ValueError(f"Columns must be non-empty and of one length, got {lengths}.")
    self._arrays = dict(arrays)
    self.keys = tuple(arrays)
    self._length = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._length

  def _take(self, indices, keys):
    return {k: self._arrays[k][indices] for k in keys}

  def column(self, key: str) -> np.ndarray:
    """A whole column (in memory already)."""
    return self._arrays[key]


class RecordTable(Table):
  """Examples read on demand from a random-access record source (e.g. TFDS's array_record).

  Attributes:
    source: ``source.__getitems__(positions) -> list of records`` (a TFDS data source).
    positions: Integer array ``[N]``: the record of example ``i`` is ``positions[i]``.
    keys: the columns ``convert`` produces.
    convert: ``convert(records, keys) -> {key: array [n, ...]}``.
  """

  def __init__(
    self,
    source: Any,
    positions: np.ndarray,
    keys: Sequence[str],
    convert: Callable[[list[dict], Sequence[str]], dict[str, np.ndarray]],
  ):
    self._source, self._positions, self._convert = source, np.asarray(positions), convert
    self.keys = tuple(keys)

  def __len__(self) -> int:
    return len(self._positions)

  def _take(self, indices, keys):
    return self._convert(self._source.__getitems__(self._positions[indices].tolist()), keys)


class _Joined(Table):
  def __init__(self, tables: Sequence[Table], keys: Sequence[str] | None):
    owner: dict[str, Table] = {}
    for table in tables:
      for key in table.keys:
        owner.setdefault(key, table)
    if len({len(t) for t in tables}) != 1:
      raise ValueError(f"Joined tables must have one length, got {[len(t) for t in tables]}.")
    keys = tuple(owner) if keys is None else tuple(keys)
    if missing := [k for k in keys if k not in owner]:
      raise ValueError(f"Unknown columns {missing}; the tables have {list(owner)}.")
    self._tables, self._owner, self.keys = tables, owner, keys

  def __len__(self) -> int:
    return len(self._tables[0])

  def _take(self, indices, keys):
    out = {}
    for table in self._tables:
      mine = [k for k in keys if self._owner[k] is table]
      if mine:
        out |= table._take(indices, mine)
    return {k: out[k] for k in keys}


def join(*tables: Table, keys: Sequence[str] | None = None) -> Table:
  """The columns of several tables of the same examples; earlier tables win a shared key.

  Args:
    *tables: Tables of equal length.
    keys: The columns to keep; ``None`` for all.
  """
  return _Joined(tables, keys)
