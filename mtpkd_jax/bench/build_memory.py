"""Peak memory of building a licensed dataset's builder from dummy files at two sizes.

For each size, a dataset's dummy writer (:mod:`mtpkd_jax.data.builders.dummy`) writes its
files in the release layout with that many subjects (BioVid), recordings (RECOLA), videos
per fold (CMU-MOSI) or frames per video (Aff-Wild2), and the builder's Python API builds
them, in a fresh process per size (its worker processes loading units, one per core),
while the peak resident memory is recorded: the process's own, or the summed memory of the
process and its workers, sampled (:class:`~mtpkd_jax.bench.processes.TreePeak`), whichever
is larger. A build streams (each worker a unit's files at a time, each example written as
it comes), so its peak memory should stay flat as the dataset grows; holding its examples
would add their size in memory (``examples x schema.example_bytes``, the arrays before the
records' compression) to the peak.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import time
from pathlib import Path

from mtpkd_jax.bench import processes


@dataclasses.dataclass(frozen=True)
class Case:
  """A dataset the benchmark builds.

  Attributes:
    dataset: ``<builder>/<config>``.
    grows: the dummy writer's argument that the size sets.
    sizes: the default sizes, small then large.
    options: the build's config fields (as ``experiments.build_dataset --options``).
    fixed: the dummy writer's other arguments.
  """

  dataset: str
  grows: str
  sizes: tuple[int, int]
  options: dict = dataclasses.field(default_factory=dict)
  fixed: dict = dataclasses.field(default_factory=dict)

  def write(self, root: Path, size: int) -> None:
    """Writes the dummy files of ``size`` under ``root``."""
    module = self.dataset.split("/")[0]
    dummy = importlib.import_module(f"mtpkd_jax.data.builders.dummy.{module}")
    dummy.write(root, **self.fixed, **{self.grows: size})


CASES = {
  "biovid": Case("biovid/part_a_binary", "subjects", (16, 64), fixed={"samples_per_class": 4}),
  "affwild2": Case("affwild2/va", "frames", (200, 800)),
  "recola": Case("recola/arousal", "recordings", (2, 8), {"window": 20, "stride": 10}),
  "mosi": Case("mosi/sentiment", "videos_per_fold", (2, 8)),
}


def _build(dataset: str, options: dict, manual_dir: str, data_dir: str, queue):
  # Imported here: the measured process starts bare (spawn), and so does its memory.
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  builder = pipeline.builder(dataset, data_dir, options or None, manual_dir)
  with processes.TreePeak() as peak:
    start = time.perf_counter()
    report = builder.download_and_prepare()
    build_s = time.perf_counter() - start
  queue.put(
    {
      "units": report.units,
      "examples": report.examples,
      "examples_mib": report.examples * builder.schema.example_bytes / 2**20,
      "build_s": build_s,
      "examples_per_s": report.examples / build_s,
      "peak_rss_mib": max(peak.mib, processes.peak_mib()),
    }
  )


def run(name: str, sizes: tuple[int, int] | None, out_dir: Path) -> dict:
  """Builds ``name``'s dummy files at two sizes; writes ``build_memory.json``, returns it.

  Args:
    name: a key of ``CASES``.
    sizes: the small and the large size of the case's ``grows`` argument; ``None`` for the
      case's defaults.
    out_dir: where the dummy files, the builds and ``build_memory.json`` go (the files and
      builds are replaced).

  Returns:
    A dict with keys ``dataset``, ``options``, ``grows``, ``rows`` (one per size), ``ratio``,
    ``delta_mib`` and ``examples_delta_mib``: the peak RSS of the large build over the small
    one's, their difference, and how much more memory the large build's examples take.

  Raises:
    ValueError: on an unknown ``name``, or sizes that are not two increasing positive ints.
  """
  if name not in CASES:
    raise ValueError(f"Unknown dataset {name!r}; the benchmark builds {sorted(CASES)}.")
  case = CASES[name]
  sizes = tuple(sizes or case.sizes)
  if len(sizes) != 2 or not 0 < sizes[0] < sizes[1]:
    raise ValueError(f"`sizes` must be two increasing positive sizes, got {sizes}.")
  rows = []
  for size in sizes:
    manual_dir, data_dir = out_dir / f"manual_{size}", out_dir / f"tfds_{size}"
    for folder in (manual_dir, data_dir):
      shutil.rmtree(folder, ignore_errors=True)
    case.write(manual_dir, size)
    row = processes.in_fresh_process(
      _build, case.dataset, case.options, str(manual_dir), str(data_dir)
    )
    rows.append({case.grows: size, **row})
  small, large = rows
  result = {
    "dataset": case.dataset,
    "options": case.options,
    "grows": case.grows,
    "rows": rows,
    "ratio": large["peak_rss_mib"] / small["peak_rss_mib"],
    "delta_mib": large["peak_rss_mib"] - small["peak_rss_mib"],
    "examples_delta_mib": large["examples_mib"] - small["examples_mib"],
  }
  (out_dir / "build_memory.json").write_text(json.dumps(result, indent=1))
  return result


def markdown(result: dict) -> str:
  """The two builds side by side, and what their peak memory is compared with."""
  grows = result["grows"]
  lines = [
    f"Building {result['dataset']} (options {result['options']}) from dummy files, "
    f"`{grows}` set to each size, one fresh process per build:",
    "",
    f"| {grows} | units | examples | examples in memory (MiB) | build (s) | examples/s "
    "| peak RSS (MiB) |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r[grows]} | {r['units']} | {r['examples']} | {r['examples_mib']:.1f} "
      f"| {r['build_s']:.1f} | {r['examples_per_s']:.0f} | {r['peak_rss_mib']:.0f} |"
    )
  lines += [
    "",
    f"Peak RSS large / small: {result['ratio']:.3f} ({result['delta_mib']:+.1f} MiB), while "
    f"its examples take {result['examples_delta_mib']:.1f} MiB more (what holding them would "
    "add).",
  ]
  return "\n".join(lines)
