"""Writing a TFDS dataset as it streams in: array_record shards plus TFDS's metadata.

TFDS's own writer buffers every serialized example in memory before it shards them (up to
1 GB, then spills to temporary files through ``tf.io.gfile``, which needs TensorFlow). A
dataset larger than memory, or than 1 GB, is written here instead: examples are serialized
with the dataset's ``FeaturesDict`` and appended, in order, to array_record shards of
``shard_examples`` examples, and the metadata that ``tfds.builder_from_directory`` reads is
written with ``tfds.folder_dataset.write_metadata``. Memory stays that of one example; the
records keep their order (record ``i`` is example ``i``); no TensorFlow is needed.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module

from mtpkd_jax.data import example_wire

_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
# One record a group (random access reads one), snappy-compressed: BioVid clips read in 0.53
# ms of CPU each (zstd, array_record's default: 0.76) from files 1.6x zstd's size
# (docs/data_performance.md). Readers take any compression the files say.
WRITER_OPTIONS = "group_size:1,snappy"


def write(
  directory: str | Path,
  name: str,
  features: tfds.features.FeaturesDict,
  examples: Iterable[Mapping[str, Any]],
  *,
  split: str = "train",
  shard_examples: int = 10_000,
  description: str = "",
  files: Mapping[str, str] | None = None,
) -> None:
  """Writes one split to ``directory`` (a dataset's version folder), all or nothing.

  The examples go to ``<directory>.incomplete`` first, which is renamed once complete: an
  exception while generating (a corrupt file, a failed check) leaves no dataset behind.

  Args:
    directory: the dataset's version folder, e.g. ``<data_dir>/<name>/<config>/1.0.0``.
    name: the dataset's name, in the shard file names.
    features: the examples' features.
    examples: the examples, in order: dicts, or records (bytes) they serialize to.
    split: the split's name.
    shard_examples: examples per shard.
    description: the dataset's description, in its metadata.
    files: more text files to write into the folder, ``{file name: content}`` (e.g. the
      dataset's schema), written with the records: all or nothing too.
  """
  directory = Path(directory)
  incomplete = directory.with_name(f"{directory.name}.incomplete")
  shutil.rmtree(incomplete, ignore_errors=True)
  incomplete.mkdir(parents=True)
  try:
    shard_lengths, num_bytes, writer = [], 0, None
    for example in examples:
      if writer is None or shard_lengths[-1] == shard_examples:
        if writer is not None:
          writer.close()
        path = incomplete / f"{name}-{split}.array_record-{len(shard_lengths):05d}"
        writer = array_record_module.ArrayRecordWriter(str(path), WRITER_OPTIONS)
        shard_lengths.append(0)
      record = example if isinstance(example, bytes) else features.serialize_example(example)
      writer.write(record)
      shard_lengths[-1] += 1
      num_bytes += len(record)
    if writer is not None:
      writer.close()
    num_shards = len(shard_lengths)
    for path in incomplete.glob(f"{name}-{split}.array_record-*"):
      path.rename(path.with_name(f"{path.name}-of-{num_shards:05d}"))
    template = tfds.core.naming.ShardedFileTemplate(
      data_dir=incomplete,
      template=_TEMPLATE,
      dataset_name=name,
      split=split,
      filetype_suffix="array_record",
    )
    info = tfds.core.SplitInfo(
      name=split, shard_lengths=shard_lengths, num_bytes=num_bytes, filename_template=template
    )
    tfds.folder_dataset.write_metadata(
      data_dir=incomplete,
      features=features,
      split_infos=[info],
      filename_template=_TEMPLATE,
      check_data=False,
      description=description,
    )
    for file_name, content in (files or {}).items():
      (incomplete / file_name).write_text(content)
  except BaseException:
    shutil.rmtree(incomplete, ignore_errors=True)
    raise
  shutil.rmtree(directory, ignore_errors=True)
  incomplete.rename(directory)


def is_written(directory: str | Path) -> bool:
  """Whether ``write`` completed for ``directory``."""
  return (Path(directory) / "dataset_info.json").is_file()


def read_only(directory: str | Path) -> tfds.core.DatasetBuilder:
  """The written dataset, as TFDS reads it (``as_data_source``, ``info``)."""
  return tfds.builder_from_directory(str(directory))


class Written:
  """The reading half of a builder whose ``data_dir`` holds a dataset written by :func:`write`.

  Gives the ``info`` and ``as_data_source`` that :mod:`mtpkd_jax.data.pipeline` reads.
  """

  data_dir: str | Path

  @property
  def _written(self) -> tfds.core.DatasetBuilder:
    return read_only(self.data_dir)

  @property
  def info(self) -> tfds.core.DatasetInfo:
    """The written dataset's TFDS info (features, splits)."""
    return self._written.info

  def as_data_source(self, split: str):
    """The random-access TFDS data source of ``split``."""
    return self._written.as_data_source(split=split)


class Source:
  """Random access to a split's records, each feature decoded only when it is read.

  TFDS's data source decodes every feature of every record it reads, copying each array
  twice; training reads a few columns (a clip and its label, not the signals) of each
  batch. Here a record's features are found in its bytes (``tf.train.Example``'s
  encoding, :mod:`~mtpkd_jax.data.example_wire`, no TensorFlow) and a feature decoded when
  asked for: a fixed-shape array stored as bytes is a view of the record
  (``np.frombuffer``), the values TFDS's decoder gives (tests compare the two).
  :meth:`of` gives one for datasets whose features are all such tensors or text, ``None``
  otherwise (read them with TFDS's data source).

  Args:
    directory: the dataset's version folder.
    features: its features (``info.features``).
    split: the split's info (file names and shard lengths, in order).
  """

  def __init__(
    self, directory: str | Path, features: tfds.features.FeaturesDict, split: tfds.core.SplitInfo
  ):
    self._paths = [str(Path(directory) / name) for name in split.filenames]
    self._ends = np.cumsum(split.shard_lengths)
    self._features = dict(features.items())
    self._readers: list = [None] * len(self._paths)
    self._lock = threading.Lock()

  @classmethod
  def of(cls, builder: tfds.core.DatasetBuilder, split: str = "train") -> Source | None:
    """The source of a built dataset's ``split``, or ``None`` if a feature is not plain."""
    features = builder.info.features
    if not all(_plain(feature) for feature in features.values()):
      return None
    return cls(builder.data_dir, features, builder.info.splits[split])

  def __len__(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def _reader(self, shard: int):
    with self._lock:  # Opened once, by one thread; array_record's readers are thread-safe.
      if self._readers[shard] is None:
        self._readers[shard] = array_record_module.ArrayRecordReader(self._paths[shard])
      return self._readers[shard]

  def __getitems__(self, positions: Sequence[int]) -> list[Mapping[str, Any]]:
    """The records at ``positions`` (any order), as mappings decoding a feature when read."""
    positions = np.asarray(positions, np.int64)
    if positions.size and not (0 <= positions.min() and positions.max() < len(self)):
      raise IndexError(f"Record positions must be in [0, {len(self)}), got {positions}.")
    shards = np.searchsorted(self._ends, positions, side="right")
    records: list = [None] * len(positions)
    for shard in np.unique(shards):
      mine = np.flatnonzero(shards == shard)
      start = self._ends[shard - 1] if shard else 0
      raw = self._reader(shard).read((positions[mine] - start).tolist())
      for i, data in zip(mine, raw, strict=True):
        records[i] = _Record(data, self._features)
    return records


def _plain(feature: tfds.features.FeatureConnector) -> bool:
  """A fixed-shape tensor stored as values or bytes, or text: what :class:`Source` decodes."""
  if isinstance(feature, tfds.features.Text):
    return True
  encoding = getattr(feature, "_encoding", None)
  return (
    type(feature) is tfds.features.Tensor
    and None not in feature.shape
    and (
      encoding == tfds.features.Encoding.BYTES
      # TFDS stores uint64 values bitcast to int64.
      or (encoding == tfds.features.Encoding.NONE and feature.np_dtype != np.uint64)
    )
  )


class _Record(Mapping):
  """A record; ``record[key]`` decodes that feature as TFDS's NumPy decoder does.

  The record is not parsed into a message (:mod:`~mtpkd_jax.data.example_wire`): an array
  stored as bytes is a view of the record's own bytes.
  """

  def __init__(self, data: bytes, features: Mapping[str, tfds.features.FeatureConnector]):
    self._data, self._values, self._features = data, example_wire.features(data), features

  def __getitem__(self, key: str) -> Any:
    feature, value = self._features[key], self._values[key]
    if isinstance(feature, tfds.features.Text):
      start, stop = value.values[0]
      return self._data[start:stop]
    if feature._encoding == tfds.features.Encoding.BYTES:  # noqa: SLF001
      start, stop = value.values[0]
      count = (stop - start) // feature.np_dtype.itemsize
      return np.frombuffer(self._data, feature.np_dtype, count, start).reshape(feature.shape)
    array = np.array(value.values, feature.np_dtype)
    return array.reshape(feature.shape) if feature.shape else array.item()

  def __iter__(self) -> Iterator[str]:
    return iter(self._features)

  def __len__(self) -> int:
    return len(self._features)
