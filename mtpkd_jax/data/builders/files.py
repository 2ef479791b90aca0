"""Finding a dataset's files in the folder the user unpacked it into.

Licensed datasets arrive as archives that users unpack in slightly different ways: an extra
folder level (``video/video/<subject>``), a folder renamed by a second unpack
(``biosignals_filtered 2/biosignals_filtered``), a differently cased part name (``partA``),
or macOS's ``__MACOSX`` debris. :func:`find_dir` and :func:`find_file` search a few levels
down and see through those; what they cannot find is a :class:`MissingFilesError` naming what
was expected where.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path


class MissingFilesError(FileNotFoundError):
  """An expected file or folder of the manual download is not there."""


def _ignored(path: Path) -> bool:
  return path.name.startswith(".") or path.name.startswith("__MACOSX")


def entries(folder: Path) -> list[Path]:
  """The folder's entries, sorted, without hidden files and ``__MACOSX`` debris."""
  return sorted(p for p in folder.iterdir() if not _ignored(p))


def _matches(path: Path, names: Sequence[str]) -> bool:
  """``path``'s name is one of ``names`` (any case), possibly followed by `` 2``, ``(1)``."""
  stem = re.sub(r"\s*(\(\d+\)|\d+)$", "", path.name) if " " in path.name else path.name
  return stem.lower() in {n.lower() for n in names}


def _collapse(folder: Path, names: Sequence[str]) -> Path:
  """Sees through ``name/name`` nesting: a folder holding only a folder of a matching name."""
  while True:
    inside = entries(folder)
    if len(inside) == 1 and inside[0].is_dir() and _matches(inside[0], names):
      folder = inside[0]
    else:
      return folder


def _search(root: Path, names: Sequence[str], depth: int, want_dir: bool) -> Path | None:
  """Breadth-first search below ``root`` (``root`` itself included) up to ``depth`` levels."""
  level = [root]
  for _ in range(depth + 1):
    found = [p for p in level if _matches(p, names) and (p.is_dir() if want_dir else p.is_file())]
    if found:
      return sorted(found, key=lambda p: (len(p.parts), str(p)))[0]
    level = [c for p in level if p.is_dir() for c in entries(p)]
  return None


def describe(names: Sequence[str]) -> str:
  """``names`` for a message: ``'a' or 'b'``."""
  return " or ".join(repr(n) for n in names)


def find_dir(root: Path, names: Sequence[str], depth: int = 2) -> Path | None:
  """The folder called one of ``names`` at most ``depth`` levels below ``root``, or ``None``.

  ``root`` itself counts when it has the name. Nested copies of the name (``video/video``,
  ``biosignals_filtered 2/biosignals_filtered``) are seen through.
  """
  found = _search(Path(root), names, depth, want_dir=True)
  return None if found is None else _collapse(found, names)


def find_file(root: Path, names: Sequence[str], depth: int = 2) -> Path | None:
  """The file called one of ``names`` at most ``depth`` levels below ``root``, or ``None``."""
  return _search(Path(root), names, depth, want_dir=False)


def archives(root: Path, names: Sequence[str], depth: int = 2) -> list[Path]:
  """Unextracted archives ``<name>.zip|.tar|.tar.gz|.7z`` of the ``names``, to name in errors."""
  suffixes = (".zip", ".tar", ".tar.gz", ".tgz", ".7z", ".rar")
  archived = [f"{n}{s}" for n in names for s in suffixes]
  found = _search(Path(root), archived, depth, want_dir=False)
  return [] if found is None else [found]
