"""A serialized ``tf.train.Example``'s features, found without building the message.

Parsing a record with ``tf.train.Example.FromString`` copies it into a message, and each
read of a ``bytes_list`` value copies that value again: a BioVid clip (0.36 MiB) twice,
about half the CPU of reading one on the host (``docs/data_performance.md``). :func:`features`
walks the protocol-buffer encoding instead and says, for each feature, where its values lie
in the record, so that an array stored as bytes is read as a view of the record
(``np.frombuffer(record, offset=...)``) and only the few small values are decoded.

It reads what the protobuf parser reads: ``features`` given more than once merged (a record
written as an example followed by a message of more features, as the builders write their
``index``), a key given twice its last value, ``float_list`` and ``int64_list`` values packed
or not, fields it does not know skipped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

# Wire types of the protobuf encoding.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


class Feature(NamedTuple):
  """One feature of a record.

  Attributes:
    kind: ``"bytes_list"``, ``"float_list"`` or ``"int64_list"``.
    values: for ``bytes_list``, the ``(start, stop)`` of each value in the record; for
      ``float_list``, a float32 array; for ``int64_list``, a list of ints.
  """

  kind: str
  values: list | np.ndarray


def _varint(data: bytes, at: int) -> tuple[int, int]:
  """The varint at ``data[at]`` and the position after it."""
  byte = data[at]
  if byte < 0x80:  # Most keys and lengths: one byte.
    return byte, at + 1
  value, shift = byte & 0x7F, 7
  while True:
    at += 1
    byte = data[at]
    value |= (byte & 0x7F) << shift
    if byte < 0x80:
      return value, at + 1
    shift += 7


def _fields(data: bytes, start: int, stop: int) -> list[tuple[int, int, Any]]:
  """``(number, wire type, value)`` of each field of the message ``data[start:stop]``.

  ``value``: a varint's value, or where a length-delimited field's bytes or a fixed-size
  field's lie, ``(start, stop)``.

  Raises:
    ValueError: on bytes that are not a message.
  """
  fields, at = [], start
  try:
    while at < stop:
      key, at = _varint(data, at)
      wire = key & 7
      if wire == _VARINT:
        value, at = _varint(data, at)
        fields.append((key >> 3, wire, value))
        continue
      if wire == _LEN:
        length, at = _varint(data, at)
      elif wire == _I64 or wire == _I32:  # noqa: PLR1714  (ints: faster than `in`)
        length = 8 if wire == _I64 else 4
      else:
        raise ValueError(f"Not a serialized tf.train.Example: wire type {wire} at byte {at}.")
      fields.append((key >> 3, wire, (at, at + length)))
      at += length
  except IndexError:
    at = stop + 1
  if at != stop:
    raise ValueError(f"Not a serialized tf.train.Example: a field past its message's end ({at}).")
  return fields


def _signed(value: int) -> int:
  """An int64 from its varint (two's complement)."""
  return value - (1 << 64) if value >= 1 << 63 else value


def _values(data: bytes, kind: str, start: int, stop: int) -> list | np.ndarray:
  """The values of a ``BytesList``, ``FloatList`` or ``Int64List`` in ``data[start:stop]``."""
  spans, floats, ints = [], [], []
  for number, wire, value in _fields(data, start, stop):
    if number != 1:
      continue
    if kind == "bytes_list":
      spans.append(value)
    elif kind == "float_list":
      # Packed (one run of float32) or one value a field.
      floats.append(np.frombuffer(data, "<f4", (value[1] - value[0]) // 4, value[0]))
    elif wire == _VARINT:
      ints.append(_signed(value))
    else:
      at, end = value
      while at < end:
        item, at = _varint(data, at)
        ints.append(_signed(item))
  if kind == "bytes_list":
    return spans
  if kind == "float_list":
    return np.concatenate(floats) if floats else np.zeros(0, np.float32)
  return ints


def _feature(data: bytes, start: int, stop: int) -> Feature | None:
  """A ``Feature`` message: its last kind's values (the kinds are a oneof)."""
  found = None
  for number, wire, span in _fields(data, start, stop):
    if wire == _LEN and number in _KINDS:
      kind = _KINDS[number]
      values = _values(data, kind, *span)
      if found is not None and found.kind == kind:  # A kind given twice: merged.
        if kind == "float_list":
          values = np.concatenate([found.values, values])
        else:
          values = found.values + values
      found = Feature(kind, values)
  return found


def features(data: bytes) -> dict[str, Feature]:
  """The features of the serialized ``tf.train.Example`` ``data``, ``{key: Feature}``.

  A feature with no value set (an empty ``Feature``) is left out, as TFDS writes none.

  Raises:
    ValueError: on bytes that are not a serialized message.
  """
  out: dict[str, Feature] = {}
  for number, wire, span in _fields(data, 0, len(data)):
    if number != 1 or wire != _LEN:
      continue
    for entry_number, entry_wire, (start, stop) in _fields(data, *span):
      if entry_number != 1 or entry_wire != _LEN:
        continue
      key, value = b"", None
      for field, field_wire, field_span in _fields(data, start, stop):
        if field == 1 and field_wire == _LEN:
          key = data[field_span[0] : field_span[1]]
        elif field == 2 and field_wire == _LEN:
          value = _feature(data, *field_span)
      name = key.decode()
      out.pop(name, None)  # A key given again replaces its value.
      if value is not None:
        out[name] = value
  return out
