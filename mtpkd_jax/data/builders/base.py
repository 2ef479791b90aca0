"""The shared machinery of the builders of manually downloaded (licensed) datasets.

A :class:`ManualBuilder` reads the files a user downloaded and unpacked into ``manual_dir``
and writes canonical examples (see :mod:`mtpkd_jax.data.schema`) as a TFDS ``array_record``
dataset with :mod:`mtpkd_jax.data.records`, streaming, so that a dataset larger than memory
(or than TFDS's 1 GB writer buffer, past which TFDS needs TensorFlow) builds in the memory of
one unit. It acts as a TFDS builder for :mod:`mtpkd_jax.data.pipeline` (``download_and_prepare``,
``as_data_source``, ``info``, ``schema``).

A subclass sets ``name``, ``builder_configs`` and ``MANUAL_DOWNLOAD_INSTRUCTIONS`` and
implements :meth:`ManualBuilder._scan`: it finds the files (an error naming what was expected
where when they are missing) and returns a :class:`Plan`: the schema, the extra stored
features and the *units* (a sample, a recording, a video), each loaded by a function that
raises :class:`~mtpkd_jax.data.builders.report.BadFile` to have the unit skipped and listed.
Every example carries ``subject`` (int), ``subject_name`` and ``video_id`` (text).

``dummy=True`` in a config builds from files that the builder's dummy writer generates in
the real layout (tiny media), under ``<data_dir>/<name>/<config>/dummy_manual``: what the
smoke configs and the tests train on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from mtpkd_jax.data import features as features_lib
from mtpkd_jax.data import records
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data.builders import files
from mtpkd_jax.data.builders.report import BadFile, BuildReport

VERSION = "1.0.0"
_SCHEMA = "schema.json"
ID_FEATURES = ("subject_name", "video_id")


@dataclasses.dataclass(eq=False)
class ManualConfig(tfds.core.BuilderConfig):
  """Options every manual builder has.

  Attributes:
    max_bad_fraction: the build fails when more than this fraction of its units (samples,
      recordings, videos) had to be skipped for corrupt or missing files.
    dummy: build from generated dummy files in the real layout instead of ``manual_dir``.
  """

  max_bad_fraction: float = 0.05
  dummy: bool = False


@dataclasses.dataclass
class Plan:
  """What a build will write.

  Attributes:
    schema: the dataset's schema.
    units: ``(name, load)`` pairs; ``load(report)`` returns the unit's examples (an iterable
      of dicts of canonical and extra features, without ``index``), or raises ``BadFile``
      before yielding any to have the unit skipped. ``report.repair`` lists a repaired defect.
    extra: the stored features beyond the canonical ones and ``ID_FEATURES``.
  """

  schema: schema_lib.Schema
  units: list[tuple[str, Callable[[BuildReport], Iterable[dict[str, Any]]]]]
  extra: dict[str, tfds.features.FeatureConnector] = dataclasses.field(default_factory=dict)


def tensor(shape: tuple[int, ...], dtype) -> tfds.features.Tensor:
  """A stored array feature (raw bytes: fast to write and read)."""
  encoding = tfds.features.Encoding.BYTES if shape else tfds.features.Encoding.NONE
  return tfds.features.Tensor(shape=shape, dtype=np.dtype(dtype), encoding=encoding)


class ManualBuilder(records.Written):
  """Base class of the builders of manually downloaded datasets (see the module docstring)."""

  name: str = ""
  builder_configs: dict[str, ManualConfig] = {}
  MANUAL_DOWNLOAD_INSTRUCTIONS: str = ""
  target_keys = ("y",)

  def __init__(
    self,
    *,
    config: ManualConfig | str,
    data_dir: str | Path | None = None,
    file_format: str = "",
    manual_dir: str | Path | None = None,
  ):
    del file_format  # Always array_record.
    self.builder_config = self.builder_configs[config] if isinstance(config, str) else config
    self._root = Path(data_dir or tfds.core.constants.DATA_DIR).expanduser()
    self.data_dir = self._root / self.name / self.builder_config.name / VERSION
    self._manual_dir = None if manual_dir is None else Path(manual_dir).expanduser()

  @property
  def full_name(self) -> str:
    return f"{self.name}/{self.builder_config.name}"

  @property
  def manual_dir(self) -> Path:
    """Where the downloaded files are (default: TFDS's ``<data_dir>/downloads/manual``)."""
    if self.builder_config.dummy:
      return self.data_dir.parent / "dummy_manual"
    return self._manual_dir or self._root / "downloads" / "manual"

  @property
  def report_path(self) -> Path:
    """The build's report (JSON), next to the dataset's version folder."""
    return self.data_dir.with_name(f"{VERSION}.build_report.json")

  @classmethod
  def write_dummy(cls, root: Path, config: ManualConfig) -> None:
    """Writes dummy files in the real layout under ``root`` (the dummy writers override it)."""
    raise NotImplementedError(f"{cls.name} has no dummy writer.")

  def _scan(self, manual_dir: Path) -> Plan:
    raise NotImplementedError

  def missing(
    self, expected: str, where: Path, searched: Iterable[str] = ()
  ) -> files.MissingFilesError:
    """The error for a missing file or folder: what, where, and how to get the files."""
    hint = "".join(f"\n  - {s}" for s in searched)
    archives = files.archives(where, [expected.split()[0].strip("`'\"")])
    if archives:
      hint += f"\n  - found the archive {archives[0]}: unpack it first"
    return files.MissingFilesError(
      f"{self.full_name}: expected {expected} under {where}, not found.{hint}\n\n"
      f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n\nThen build with: python -m "
      f"experiments.build_dataset --dataset={self.full_name} --manual_dir=DIR"
    )

  @property
  def schema(self) -> schema_lib.Schema:
    """The built dataset's schema, or (before the build) the one the manual files give."""
    if self._is_built():
      return schema_lib.Schema.from_json(json.loads((self.data_dir / _SCHEMA).read_text()))
    return self._plan().schema

  def _is_built(self) -> bool:
    return records.is_written(self.data_dir) and (self.data_dir / _SCHEMA).is_file()

  def _plan(self) -> Plan:
    if not hasattr(self, "_cached_plan"):
      manual_dir = self.manual_dir
      if self.builder_config.dummy and not (manual_dir / "complete").is_file():
        manual_dir.mkdir(parents=True, exist_ok=True)
        self.write_dummy(manual_dir, self.builder_config)
        (manual_dir / "complete").write_text("")
      if not manual_dir.is_dir():
        raise self.missing("the manual download folder", manual_dir)
      self._cached_plan = self._scan(manual_dir)
    return self._cached_plan

  def download_and_prepare(self, *, progress: bool = False) -> BuildReport | None:
    """Builds the dataset once; returns the build's report (``None`` if already built).

    Args:
      progress: show a progress bar over the units.

    Raises:
      MissingFilesError: naming what was expected where, with the download instructions.
      TooManyBadFilesError: when more than ``max_bad_fraction`` of the units were skipped
        (no dataset is written; the report is).
    """
    if self._is_built():
      return None
    plan = self._plan()
    feature_dict = features_lib.canonical_features(plan.schema)
    feature_dict |= {key: tfds.features.Text() for key in ID_FEATURES} | plan.extra
    report = BuildReport(self.full_name, self.builder_config.max_bad_fraction)
    try:
      records.write(
        self.data_dir,
        self.name,
        tfds.features.FeaturesDict(feature_dict),
        self._examples(plan, report, progress),
        description=f"{self.full_name} from {self.manual_dir}",
        files={_SCHEMA: json.dumps(plan.schema.to_json())},
      )
    finally:
      self.report_path.parent.mkdir(parents=True, exist_ok=True)
      report.write(self.report_path)
    return report

  def _examples(self, plan: Plan, report: BuildReport, progress: bool) -> Iterator[dict]:
    bar = tqdm.tqdm(plan.units, desc=self.full_name, unit="unit", disable=not progress)
    for unit, load in bar:
      report.units += 1
      try:
        examples = iter(load(report))
        example = next(examples, None)
      except BadFile as error:
        report.skip(unit, error)
        continue
      # One example referenced at a time (none kept for the unit), so memory stays flat.
      while example is not None:
        yield example | {"index": np.int64(report.examples)}
        report.examples += 1
        example = next(examples, None)
    report.check()
