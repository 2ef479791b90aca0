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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from array_record.python import array_record_module

_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


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
    examples: the examples, in order.
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
        writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
        shard_lengths.append(0)
      record = features.serialize_example(example)
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
