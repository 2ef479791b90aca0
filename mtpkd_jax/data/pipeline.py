"""Loading datasets into memory and batching them reproducibly with grain.

Datasets are named `"<builder>/<config>"` (e.g. `"synthetic_affect/pain_binary"`), built on
first use with TFDS's Python API (no TensorFlow) in `array_record` format, and read whole
into numpy arrays: they are small. Batches come from a `grain.MapDataset` whose element `s`
is batch `s` of the run, a pure function of `(seed, s)`, so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from mtpkd_jax.data import synthetic_affect

# Input keys; every other key of a dataset (labels, `subject`, `index`) is a target or id.
MODALITIES = ("video", "physio", "audio")

# The one place to add a dataset builder.
BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
  "synthetic_affect": synthetic_affect.SyntheticAffect,
}


def _resolve(
  name: str, overrides: Mapping[str, Any] | None
) -> tuple[type[tfds.core.GeneratorBasedBuilder], tfds.core.BuilderConfig]:
  """Looks up a builder class and config by name and applies `overrides` to the config."""
  builder_name, _, config_name = name.partition("/")
  cls = BUILDERS.get(builder_name)
  if cls is None or config_name not in cls.builder_configs:
    available = [f"{b}/{c}" for b, known in BUILDERS.items() for c in known.builder_configs]
    raise ValueError(f"Unknown dataset name {name!r}; available: {', '.join(available)}.")
  config = cls.builder_configs[config_name]
  if not overrides:
    return cls, config
  fields = {f.name for f in dataclasses.fields(config)} - {"name"}
  if unknown := set(overrides) - fields:
    raise ValueError(
      f"`overrides` has unknown fields {sorted(unknown)}; {name!r} has {sorted(fields)}."
    )
  # A name per override set, so that builds with different parameters never share a folder.
  digest = hashlib.sha1(repr(sorted(overrides.items())).encode()).hexdigest()[:10]
  return cls, dataclasses.replace(config, name=f"{config_name}_{digest}", **overrides)


def builder(
  name: str, data_dir: str | None = None, overrides: Mapping[str, Any] | None = None
) -> tfds.core.DatasetBuilder:
  """Returns the (not necessarily built) TFDS builder of a dataset.

  Args:
    name: `"<builder>/<config>"`, e.g. `"synthetic_affect/pain_binary"`.
    data_dir: TFDS data directory; `None` for TFDS's default (`~/tensorflow_datasets`).
    overrides: Config fields to change, e.g. `{"num_subjects": 12}`; the result is built
      under its own config name.

  Raises:
    ValueError: if `name` is not a known builder and config (the message lists them), or
      `overrides` names a field the config does not have.
  """
  cls, config = _resolve(name, overrides)
  return cls(config=config, data_dir=data_dir, file_format="array_record")


def dataset_info(name: str, overrides: Mapping[str, Any] | None = None) -> dict:
  """Describes a dataset from its config alone, without building it.

  Args:
    name: `"<builder>/<config>"`, e.g. `"synthetic_affect/pain_binary"`.
    overrides: Config fields to change, as for `builder`.

  Returns:
    A dict with `num_classes` (int), `classes` (tuple of names), `task` (`"pain"` or
    `"va"`), `num_examples` (int) and `shapes` (modality key -> per-example shape tuple).

  Raises:
    ValueError: as `builder`.
  """
  _, config = _resolve(name, overrides)
  return {
    "num_classes": config.num_classes,
    "classes": config.classes,
    "task": config.task,
    "num_examples": config.num_examples,
    "shapes": config.shapes,
  }


def read(dataset_builder: tfds.core.DatasetBuilder, split: str = "train") -> dict[str, np.ndarray]:
  """Builds a dataset if needed and reads one split whole into memory.

  Args:
    dataset_builder: A TFDS builder with `file_format="array_record"` whose examples have
      an integer `index` feature.
    split: The split to read.

  Returns:
    Feature name -> array with a leading `[num_examples]` axis, sorted by `index` (so
    `arrays["index"] == arange(num_examples)` for a complete split).
  """
  dataset_builder.download_and_prepare()
  source = dataset_builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))
  order = np.argsort([example["index"] for example in examples], kind="stable")
  features = dataset_builder.info.features
  return {
    key: np.stack([np.asarray(examples[i][key], dtype=features[key].np_dtype) for i in order])
    for key in features
  }


def load(
  name: str, data_dir: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
  """Builds (if needed) and loads a whole dataset into memory.

  Args:
    name: `"<builder>/<config>"`, e.g. `"synthetic_affect/pain_binary"`.
    data_dir: TFDS data directory; `None` for TFDS's default.
    overrides: Config fields to change, as for `builder`.

  Returns:
    Feature name -> array, e.g. `video` uint8 `[N, T, H, W, 3]`, `physio` float32
    `[N, time, channels]`, `audio` float32 `[N, steps, features]`, `label`/`subject`/
    `index` int64 `[N]`, `valence`/`arousal` float32 `[N]`.

  Raises:
    ValueError: as `builder`.
  """
  return read(builder(name, data_dir, overrides))


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool) -> int:
  """Number of batches in one pass over `num_examples` examples."""
  if drop_remainder:
    return num_examples // batch_size
  return -(-num_examples // batch_size)


def batch_dataset(
  arrays: Mapping[str, np.ndarray],
  indices: np.ndarray,
  *,
  batch_size: int,
  seed: int | None,
  drop_remainder: bool,
  num_epochs: int | None = 1,
  modalities: Sequence[str] | None = None,
) -> grain.MapDataset:
  """Random-access batches: element `s` is batch number `s` of the run.

  Epoch `e` visits every example of `indices` once, in an order that depends only on
  `(seed, e)`; batches never straddle two epochs. So `batch_dataset(...)[s]` is the same
  batch whenever it is asked for, which is what resuming from step `s` needs.

  Args:
    arrays: Feature name -> array with a leading example axis (as returned by `load`).
    indices: Integer array of shape `[n]`: the examples to draw from (e.g. a fold's
      `train` indices).
    batch_size: Examples per batch.
    seed: Shuffle seed; `None` keeps the order of `indices` in every epoch (evaluation).
    drop_remainder: Whether to drop each epoch's last partial batch (training).
    num_epochs: Number of passes; `None` for endless.
    modalities: Modality keys to return (a subset of `MODALITIES`, e.g. `("video",)` for a
      test-time student); `None` for all. Non-modality keys (labels, `subject`, `index`)
      are always returned.

  Returns:
    A `grain.MapDataset` of dicts of arrays with a leading `[batch]` axis.

  Raises:
    ValueError: on an empty `indices`, a non-positive `batch_size` or `num_epochs`, an
      epoch with no batch, or an unknown modality.
  """
  indices = np.asarray(indices)
  num_arrays = len(next(iter(arrays.values())))
  if (
    indices.ndim != 1
    or indices.size == 0
    or not np.issubdtype(indices.dtype, np.integer)
    or not np.all((0 <= indices) & (indices < num_arrays))
  ):
    raise ValueError(
      f"`indices` must be a non-empty 1-D integer array with values in [0, {num_arrays}), "
      f"got {indices!r}."
    )
  if batch_size < 1:
    raise ValueError(f"`batch_size` must be positive, got {batch_size}.")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"`num_epochs` must be positive or None, got {num_epochs}.")
  keys = [k for k in arrays if k not in MODALITIES or modalities is None or k in modalities]
  unknown = set(modalities or ()) - (set(MODALITIES) & set(arrays))
  if unknown:
    raise ValueError(
      f"`modalities` has unknown keys {sorted(unknown)}; available: "
      f"{[k for k in MODALITIES if k in arrays]}."
    )
  num_examples = len(indices)
  epoch_steps = steps_per_epoch(num_examples, batch_size, drop_remainder)
  if epoch_steps == 0:
    raise ValueError(
      f"`batch_size`={batch_size} exceeds the {num_examples} examples with "
      "`drop_remainder`=True: an epoch would have no batch."
    )

  order = grain.MapDataset.source(indices)
  if seed is not None:
    # Grain reshuffles epoch `e` with `seed + e`; mixing the seed first keeps runs with
    # nearby seeds from sharing epoch orders.
    order = order.shuffle(int(np.random.SeedSequence(seed).generate_state(1)[0]))
  order = order.repeat(num_epochs)

  def batch(step: int) -> dict[str, np.ndarray]:
    epoch, position = divmod(step, epoch_steps)
    start = epoch * num_examples + position * batch_size
    stop = epoch * num_examples + min(position * batch_size + batch_size, num_examples)
    chosen = np.array([order[i] for i in range(start, stop)])
    return {k: arrays[k][chosen] for k in keys}

  total_steps = sys.maxsize if num_epochs is None else num_epochs * epoch_steps
  return grain.MapDataset.range(total_steps).map(batch)


def batches(
  arrays: Mapping[str, np.ndarray],
  indices: np.ndarray,
  *,
  batch_size: int,
  seed: int | None,
  drop_remainder: bool,
  num_epochs: int | None = 1,
  start_step: int = 0,
  modalities: Sequence[str] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Iterates over batches `start_step, start_step + 1, ...` of `batch_dataset`.

  A run resumed at step `s` gets exactly the batches an uninterrupted run gets from `s` on.

  Args:
    arrays, indices, batch_size, seed, drop_remainder, num_epochs, modalities: As for
      `batch_dataset`.
    start_step: The first batch to yield (e.g. the step restored from a checkpoint).

  Returns:
    An iterator of dicts of arrays with a leading `[batch]` axis.

  Raises:
    ValueError: as `batch_dataset`, or on a negative `start_step`.
  """
  if start_step < 0:
    raise ValueError(f"`start_step` must be non-negative, got {start_step}.")
  dataset = batch_dataset(
    arrays,
    indices,
    batch_size=batch_size,
    seed=seed,
    drop_remainder=drop_remainder,
    num_epochs=num_epochs,
    modalities=modalities,
  )
  # The arrays are in memory: reading threads would only contend for the GIL.
  options = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  return iter(dataset[start_step:].to_iter_dataset(options))
