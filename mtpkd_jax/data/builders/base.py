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

:func:`with_options` gives any builder's config with options changed its own name, the same
however the options were typed (JSON lists or tuples, ``1`` or ``1.0``), so that a dataset
built with ``experiments/build_dataset.py --options`` is the one training finds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from tensorflow_datasets.core import example_serializer

from mtpkd_jax.data import features as features_lib
from mtpkd_jax.data import records
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data.builders import files, workers
from mtpkd_jax.data.builders.report import BuildReport

ConfigT = TypeVar("ConfigT", bound=tfds.core.BuilderConfig)
VERSION = "1.0.0"
_SCHEMA = "schema.json"
ID_FEATURES = ("subject_name", "video_id")


@dataclasses.dataclass(eq=False)
class ManualConfig(tfds.core.BuilderConfig):
  """Options every manual builder has.

  Attributes:
    max_bad_fraction: the build fails when more than this fraction of its units (samples,
      recordings, videos) had to be skipped for corrupt or missing files, or of its examples
      were dropped (data inside a usable unit that yields none).
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
      before yielding any to have the unit skipped. ``report.drop`` lists an example lost
      inside the unit, ``report.exclude`` a unit the protocol leaves out (it yields nothing),
      ``report.repair`` a repaired defect.
    extra: the stored features beyond the canonical ones and ``ID_FEATURES``.
  """

  schema: schema_lib.Schema
  units: list[tuple[str, Callable[[BuildReport], Iterable[dict[str, Any]]]]]
  extra: dict[str, tfds.features.FeatureConnector] = dataclasses.field(default_factory=dict)


def _canonical(value: Any, like: Any) -> Any:
  """``value`` in the form of ``like``, the value its field holds.

  A list as the tuple the field holds, an int as a float where the field holds a float.
  """
  if isinstance(like, tuple) and isinstance(value, list | tuple):
    if len(like) != len(value):
      # A tuple of any length (`tuple[str, ...]`): its items are alike, and when it is empty
      # nothing tells their type, so they stay as given.
      like = like[:1] * len(value) if like else tuple(value)
    return tuple(_canonical(v, item) for v, item in zip(value, like, strict=True))
  if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def changed_fields(config: tfds.core.BuilderConfig, base: tfds.core.BuilderConfig) -> dict:
  """The fields (name aside) whose values differ between ``config`` and ``base``."""
  return {
    f.name: getattr(config, f.name)
    for f in dataclasses.fields(base)
    if f.name != "name" and getattr(config, f.name) != getattr(base, f.name)
  }


def with_options(config: ConfigT, options: Mapping[str, Any]) -> ConfigT:
  """``config`` with ``options`` applied, named ``<config>_<digest of what they change>``.

  Each option takes the form of the field's value in ``config`` (lists as tuples, ints as
  floats) before it is applied, and options equal to ``config``'s values change nothing, so
  the name depends on the resulting field values alone, not on how the options were typed:
  builds with different values never share a folder, equal ones always do.

  Args:
    config: a builder config (a dataclass).
    options: fields of ``config`` to change, e.g. ``{"signal_window": [1, 3]}`` (JSON).

  Returns:
    ``config`` itself when nothing changes, else the changed copy under its own name.
  """
  canonical = {key: _canonical(value, getattr(config, key)) for key, value in options.items()}
  changed = changed_fields(dataclasses.replace(config, **canonical), config)
  if not changed:
    return config
  digest = hashlib.sha1(repr(sorted(changed.items())).encode()).hexdigest()[:10]
  return dataclasses.replace(config, name=f"{config.name}_{digest}", **changed)


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
    """``<name>/<config name>``, as TFDS names a builder."""
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
    self,
    expected: str,
    where: Path,
    searched: Iterable[str] = (),
    *,
    names: Sequence[str] = (),
  ) -> files.MissingFilesError:
    """The error for a missing file or folder: what, where, and how to get the files.

    Args:
      expected: what was expected, for the message, e.g. "`video/` (<subject>/<sample>.mp4)".
      where: the folder it was expected under.
      searched: lines listing what was searched, for the message.
      names: the missing file or folder names (e.g. ``["video"]``): an archive of one of them
        under ``where`` (``video.zip``) is named in the message, to be unpacked.
    """
    hint = "".join(f"\n  - {s}" for s in searched)
    if archives := files.archives(where, names):
      hint += f"\n  - found the archive {archives[0]}: unpack it first"
    return files.MissingFilesError(
      f"{self.full_name}: expected {expected} under {where}, not found.{hint}\n\n"
      f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n\nThen build with: {self.build_command()}"
    )

  def build_command(self) -> str:
    """The ``experiments.build_dataset`` command that builds this dataset where it is read.

    It names the registered config this one derives from (a registered config, or one that
    :func:`with_options` named ``<registered>_<digest>``, as ``pipeline.builder`` makes them)
    and the options that change it, so that it builds into this builder's folder; ``DIR``
    stands for the folder holding the downloaded files.
    """
    config = self.builder_config
    base = config.name if config.name in self.builder_configs else config.name.rsplit("_", 1)[0]
    options = changed_fields(config, self.builder_configs[base])
    command = [
      "python -m experiments.build_dataset",
      f"--dataset={self.name}/{base}",
      f"--data_dir={shlex.quote(str(self._root))}",
      "--manual_dir=DIR",
    ]
    if options:
      command.append(f"--options={shlex.quote(json.dumps(options))}")
    return " ".join(command)

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

  def download_and_prepare(
    self, *, progress: bool = False, num_workers: int | None = None
  ) -> BuildReport | None:
    """Builds the dataset once; returns the build's report (``None`` if already built).

    Args:
      progress: show a progress bar over the units.
      num_workers: processes loading units at once (:mod:`~.workers`); ``None`` for as
        many as this process may use cores, ``1`` for this process alone. The dataset and
        the report are the same, byte for byte, whatever the number. With more than one,
        a script must start from ``if __name__ == "__main__":`` (the workers import its
        main module, as any ``multiprocessing`` program's do).

    Raises:
      MissingFilesError: naming what was expected where, with the download instructions.
      TooManyBadFilesError: when more than ``max_bad_fraction`` of the units were skipped
        or of the examples dropped, or (``NoExampleWrittenError``) when no example was
        written (no dataset is written; the report is).
      ValueError: on a ``num_workers`` that is not a positive integer or ``None``.
    """
    if self._is_built():
      return None
    num_workers = workers.check_count(num_workers)
    plan = self._plan()
    feature_dict = features_lib.canonical_features(plan.schema)
    feature_dict |= {key: tfds.features.Text() for key in ID_FEATURES} | plan.extra
    report = BuildReport(self.full_name, self.builder_config.max_bad_fraction)
    try:
      records.write(
        self.data_dir,
        self.name,
        tfds.features.FeaturesDict(feature_dict),
        self._records(plan, feature_dict, report, progress, num_workers),
        description=f"{self.full_name} from {self.manual_dir}",
        files={_SCHEMA: json.dumps(plan.schema.to_json())},
      )
    finally:
      self.report_path.parent.mkdir(parents=True, exist_ok=True)
      report.write(self.report_path)
    return report

  def _records(
    self,
    plan: Plan,
    feature_dict: dict[str, tfds.features.FeatureConnector],
    report: BuildReport,
    progress: bool,
    num_workers: int,
  ) -> Iterator[bytes]:
    """The serialized examples, in order: each serialized where it is loaded (a worker).

    A unit does not know how many examples came before it, so its loader serializes every
    feature but ``index``, and the index is appended here as a message of its own: parsing
    concatenated protocol buffers merges them (the protobuf encoding's rule), so the record
    reads as the example with its index. Only this cheap part is left to the build's
    process, which shares the cores with the workers.
    """
    bar = tqdm.tqdm(total=len(plan.units), desc=self.full_name, unit="unit", disable=not progress)
    make_units = functools.partial(
      _units, type(self), self.builder_config, self._root, self._manual_dir
    )
    index = Serializer({"index": feature_dict["index"]})
    results = workers.unit_results(
      make_units,
      plan.units,
      self.full_name,
      num_workers,
      preload=[type(self).__module__],
      encode=Serializer({k: v for k, v in feature_dict.items() if k != "index"}),
    )
    for kind, value in results:
      if kind == "example":
        yield value + index({"index": np.int64(report.examples)})
        report.examples += 1
      else:
        report.add(value)
        bar.update()
    bar.close()
    report.check()


class Serializer:
  """``FeaturesDict(features).serialize_example`` with the same bytes in every process.

  A protocol buffer's map (an example's features) is written in an order that may differ
  from one process to the next; here its keys are sorted. Picklable, for the workers.

  Args:
    features: the features serialized, ``{name: feature}``.
  """

  def __init__(self, features: Mapping[str, tfds.features.FeatureConnector]):
    self._features = tfds.features.FeaturesDict(dict(features))
    self._serializer = example_serializer.ExampleSerializer(self._features.get_serialized_info())

  def __call__(self, example: Mapping[str, Any]) -> bytes:
    """The serialized ``tf.train.Example`` of ``example`` (its features' values)."""
    proto = self._serializer.get_tf_example(self._features.encode_example(example))
    return proto.SerializeToString(deterministic=True)


def _units(cls: type[ManualBuilder], config, root: Path, manual_dir: Path | None) -> list:
  """The units of a build, scanned anew (in a build's worker process)."""
  return cls(config=config, data_dir=root, manual_dir=manual_dir)._plan().units
