"""What a build skipped or repaired, and the check that too much of it fails the build.

A corrupt or truncated file (an unreadable video, a short CSV, a missing annotation) costs
the build its *unit* (a sample, a recording, a video): the unit is skipped, counted and
listed, never silently dropped. A defect that leaves the unit usable (one unreadable frame
image, zero-filled) is *repaired* and listed too. At the end of the build,
:meth:`BuildReport.check` fails it when more than ``max_bad_fraction`` of its units were
skipped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

_LISTED = 20  # Entries shown in a message; the JSON report lists all.


class BadFile(Exception):  # noqa: N818  (a unit's verdict, raised to skip it)
  """A unit's file is unreadable, truncated or inconsistent: the unit is skipped.

  Attributes:
    path: the offending file.
    reason: what is wrong with it.
  """

  def __init__(self, path: str | Path, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = str(path), reason


class TooManyBadFilesError(ValueError):
  """More than the allowed fraction of a build's units were skipped."""


@dataclasses.dataclass
class BuildReport:
  """The units a build saw, skipped and repaired.

  Attributes:
    dataset: ``<builder>/<config>``, for messages.
    max_bad_fraction: the largest fraction of skipped units the build accepts.
    units: units seen.
    examples: examples written.
    skipped: ``{"unit", "path", "reason"}`` per skipped unit.
    repaired: ``{"unit", "path", "reason"}`` per repaired defect.
  """

  dataset: str
  max_bad_fraction: float
  units: int = 0
  examples: int = 0
  skipped: list[dict] = dataclasses.field(default_factory=list)
  repaired: list[dict] = dataclasses.field(default_factory=list)

  def skip(self, unit: str, error: BadFile) -> None:
    self.skipped.append({"unit": unit, "path": error.path, "reason": error.reason})

  def repair(self, unit: str, path: str | Path, reason: str) -> None:
    self.repaired.append({"unit": unit, "path": str(path), "reason": reason})

  def summary(self) -> str:
    """A few lines: counts, then the skipped and repaired entries (the first few of each)."""
    lines = [
      f"{self.dataset}: {self.units} units, {len(self.skipped)} skipped "
      f"({self.bad_fraction:.1%}, at most {self.max_bad_fraction:.1%} allowed), "
      f"{len(self.repaired)} repaired, {self.examples} examples written."
    ]
    for title, entries in (("Skipped", self.skipped), ("Repaired", self.repaired)):
      if entries:
        lines.append(f"{title}:")
        lines += [f"  {e['unit']}: {e['path']}: {e['reason']}" for e in entries[:_LISTED]]
        if len(entries) > _LISTED:
          lines.append(f"  ... and {len(entries) - _LISTED} more (see the JSON report).")
    return "\n".join(lines)

  @property
  def bad_fraction(self) -> float:
    return len(self.skipped) / self.units if self.units else 0.0

  def check(self) -> None:
    """Fails the build when no unit was usable or too many were skipped.

    Raises:
      TooManyBadFilesError: with the summary.
    """
    if self.units == len(self.skipped):
      raise TooManyBadFilesError(f"No usable unit.\n{self.summary()}")
    if self.bad_fraction > self.max_bad_fraction:
      raise TooManyBadFilesError(
        f"Too many bad files: {self.bad_fraction:.1%} of the units were skipped, more than "
        f"`max_bad_fraction`={self.max_bad_fraction}.\n{self.summary()}"
      )

  def write(self, path: str | Path) -> None:
    Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1))
