"""Reading ARFF files (openSMILE features, AVEC gold standards) by their headers.

Columns are found by the ``@attribute`` names and types of each file, never by fixed
offsets: the identifier attributes of the AVEC feature files vary between releases.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mtpkd_jax.data.builders.report import BadFile

_NUMERIC = ("numeric", "real", "integer")


@dataclasses.dataclass(frozen=True)
class Arff:
  """A parsed ARFF file.

  Attributes:
    relation: the ``@relation`` name.
    names: every attribute's name, in file order.
    types: every attribute's type (lower case: ``numeric``, ``string``, ...).
    numeric: float64 ``[rows, numeric attributes]``: the numeric columns, in file order.
    numeric_names: their names.
  """

  relation: str
  names: tuple[str, ...]
  types: tuple[str, ...]
  numeric: np.ndarray
  numeric_names: tuple[str, ...]

  def column(self, name: str) -> np.ndarray | None:
    """A numeric column by name (any case), or ``None``."""
    lowered = [n.lower() for n in self.numeric_names]
    return self.numeric[:, lowered.index(name.lower())] if name.lower() in lowered else None


def _unquote(token: str) -> str:
  token = token.strip()
  return token[1:-1] if len(token) > 1 and token[0] == token[-1] and token[0] in "'\"" else token


def read(path: Path) -> Arff:
  """Parses an ARFF file.

  Raises:
    BadFile: on a missing ``@data`` section, a row with the wrong number of values, or a
      value of a numeric attribute that is not a number (``?`` reads as NaN).
  """
  try:
    text = Path(path).read_text(errors="replace")
  except OSError as error:
    raise BadFile(path, f"unreadable ({error})") from None
  relation, names, types, rows, in_data = "", [], [], [], False
  for number, line in enumerate(text.splitlines(), start=1):
    line = line.strip()
    if not line or line.startswith("%"):
      continue
    if in_data:
      rows.append((number, line))
      continue
    keyword, _, rest = line.partition(" ")
    keyword = keyword.lower()
    if keyword == "@relation":
      relation = _unquote(rest)
    elif keyword == "@attribute":
      rest = rest.strip()
      if rest[:1] in "'\"":
        end = rest.index(rest[0], 1)
        name, kind = rest[1:end], rest[end + 1 :]
      else:
        name, _, kind = rest.partition(" ")
      names.append(name)
      types.append(kind.strip().lower())
    elif keyword == "@data":
      in_data = True
  if not in_data or not names:
    raise BadFile(path, "not an ARFF file (no @attribute or @data section)")
  numeric = [i for i, t in enumerate(types) if t.split()[0] in _NUMERIC]
  values = np.empty((len(rows), len(numeric)), np.float64)
  for r, (number, line) in enumerate(rows):
    fields = line.split(",")
    if len(fields) != len(names):
      raise BadFile(path, f"line {number} has {len(fields)} values, the header {len(names)}")
    try:
      values[r] = [np.nan if (f := fields[i].strip()) == "?" else float(f) for i in numeric]
    except ValueError:
      raise BadFile(path, f"line {number} has a non-numeric value in a numeric column") from None
  return Arff(relation, tuple(names), tuple(types), values, tuple(names[i] for i in numeric))
