"""What a build skipped, dropped, excluded or repaired, and the check that fails a bad build.

A corrupt or truncated file (an unreadable video, a short CSV, a missing annotation) costs
the build its *unit* (a sample, a recording, a video): the unit is skipped, counted and
listed, never silently dropped. Data inside a usable unit that yields no example (an opinion
segment that no word falls in) is *dropped*, counted and listed too. A unit that the dataset's
protocol leaves out (a video in none of the official folds) is *excluded*: listed, not bad.
A defect that leaves the unit usable (one unreadable frame image, zero-filled) is *repaired*
and listed. At the end of the build, :meth:`BuildReport.check` fails it when no example was
written, or when more than ``max_bad_fraction`` of its units were skipped or of its examples
dropped.
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

  def __reduce__(self):
    """Pickles it with its two arguments (a build's worker hands it to the build)."""
    return type(self), (self.path, self.reason)


class TooManyBadFilesError(ValueError):
  """More than the allowed fraction of a build's units were skipped or examples dropped."""


class NoExampleWrittenError(TooManyBadFilesError):
  """A build wrote no example: every unit was skipped, excluded or yielded nothing."""


@dataclasses.dataclass
class BuildReport:
  """The units a build saw, skipped, excluded and repaired, and the examples it dropped.

  Attributes:
    dataset: ``<builder>/<config>``, for messages.
    max_bad_fraction: the largest fraction of skipped units, and of dropped examples, the
      build accepts.
    units: units seen (excluded ones included).
    examples: examples written.
    skipped: ``{"unit", "path", "reason"}`` per skipped unit.
    dropped: ``{"unit", "path", "reason"}`` per example lost inside a usable unit.
    excluded: ``{"unit", "path", "reason"}`` per unit the dataset's protocol leaves out.
    repaired: ``{"unit", "path", "reason"}`` per repaired defect.
  """

  dataset: str
  max_bad_fraction: float
  units: int = 0
  examples: int = 0
  skipped: list[dict] = dataclasses.field(default_factory=list)
  dropped: list[dict] = dataclasses.field(default_factory=list)
  excluded: list[dict] = dataclasses.field(default_factory=list)
  repaired: list[dict] = dataclasses.field(default_factory=list)

  def skip(self, unit: str, error: BadFile) -> None:
    """Lists a unit left out because a file of it is bad; it counts toward the bad fraction."""
    self.skipped.append({"unit": unit, "path": error.path, "reason": error.reason})

  def drop(self, example: str, path: str | Path, reason: str) -> None:
    """Lists an example lost inside a usable unit; it counts toward the bad fraction."""
    self.dropped.append({"unit": example, "path": str(path), "reason": reason})

  def exclude(self, unit: str, path: str | Path, reason: str) -> None:
    """Lists a unit the protocol leaves out (it writes nothing); it is not counted as bad."""
    self.excluded.append({"unit": unit, "path": str(path), "reason": reason})

  def repair(self, unit: str, path: str | Path, reason: str) -> None:
    """Lists a file read despite a fault the builder worked around; it is not counted as bad."""
    self.repaired.append({"unit": unit, "path": str(path), "reason": reason})

  def add(self, unit: BuildReport) -> None:
    """Counts a unit and appends what its own report lists (see ``workers.load_unit``)."""
    self.units += 1
    for entries in ("skipped", "dropped", "excluded", "repaired"):
      getattr(self, entries).extend(getattr(unit, entries))

  def summary(self) -> str:
    """A few lines: counts, then each kind of entry (the first few of each)."""
    lines = [
      f"{self.dataset}: {self.units} units, {len(self.excluded)} excluded, "
      f"{len(self.skipped)} skipped ({self.skipped_fraction:.1%}), {self.examples} examples "
      f"written, {len(self.dropped)} dropped ({self.dropped_fraction:.1%}), at most "
      f"{self.max_bad_fraction:.1%} allowed; {len(self.repaired)} repaired."
    ]
    entries = {
      "Skipped": self.skipped,
      "Dropped": self.dropped,
      "Excluded": self.excluded,
      "Repaired": self.repaired,
    }
    for title, listed in entries.items():
      if listed:
        lines.append(f"{title}:")
        lines += [f"  {e['unit']}: {e['path']}: {e['reason']}" for e in listed[:_LISTED]]
        if len(listed) > _LISTED:
          lines.append(f"  ... and {len(listed) - _LISTED} more (see the JSON report).")
    return "\n".join(lines)

  @property
  def skipped_fraction(self) -> float:
    """Skipped units over the units the protocol includes."""
    included = self.units - len(self.excluded)
    return len(self.skipped) / included if included else 0.0

  @property
  def dropped_fraction(self) -> float:
    """Dropped examples over the examples written or dropped."""
    total = self.examples + len(self.dropped)
    return len(self.dropped) / total if total else 0.0

  def check(self) -> None:
    """Fails the build when it wrote nothing or lost too much.

    Raises:
      NoExampleWrittenError: when no example was written, with the summary.
      TooManyBadFilesError: when more than ``max_bad_fraction`` of the included units were
        skipped or of the examples dropped, with the summary.
    """
    if not self.examples:
      raise NoExampleWrittenError(f"No example written.\n{self.summary()}")
    for fraction, what in (
      (self.skipped_fraction, "units were skipped"),
      (self.dropped_fraction, "examples were dropped"),
    ):
      if fraction > self.max_bad_fraction:
        raise TooManyBadFilesError(
          f"Too many bad files: {fraction:.1%} of the {what}, more than "
          f"`max_bad_fraction`={self.max_bad_fraction}.\n{self.summary()}"
        )

  def write(self, path: str | Path) -> None:
    """Writes the report to ``path`` as JSON."""
    Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1))
