"""Opening datasets for random access and batching them reproducibly with grain.

Datasets are named `"<builder>/<config>"` (e.g. `"synthetic_affect/pain_binary"`), or, for a
builder of the user's own files, by the builder's name with its options (`"features_npz"`
with `{"path": ..., "task": ...}`). They are built on first use with TFDS's Python API (no
TensorFlow) in `array_record` format and opened as a :class:`Dataset`: its schema, and a
table of canonical examples (see :mod:`mtpkd_jax.data.schema`) read example by example from
the `array_record` files through TFDS's random-access data source, or held in memory when
small. Batches come from a `grain.MapDataset` whose element `s` is batch `s` of the run, a pure
function of `(seed, s)`, so a resumed run sees exactly the batches an uninterrupted one would,
whether the table is in memory or on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mtpkd_jax.data import features, records, synthetic_affect
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.data.builders import affwild2, base, biovid, mosi, recola, report

# The one place to add a dataset builder.
BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
  "synthetic_affect": synthetic_affect.SyntheticAffect,
  "features_npz": features.FeaturesNpz,
  "recola": recola.Recola,
  "mosi": mosi.Mosi,
  "biovid": biovid.Biovid,
  "affwild2": affwild2.Affwild2,
}
# Datasets whose examples take at most this many bytes are read into memory by default.
IN_MEMORY_BYTES = 1 << 30
# Batches read ahead, in as many threads, while training uses one (see `ReadAhead`).
READ_AHEAD = 2


def _resolve(
  name: str, overrides: Mapping[str, Any] | None
) -> tuple[type[tfds.core.GeneratorBasedBuilder], tfds.core.BuilderConfig]:
  """Looks up a builder class and config by name and applies `overrides` to the config."""
  builder_name, _, config_name = name.partition("/")
  cls = BUILDERS.get(builder_name)
  if cls is not None and hasattr(cls, "make_config") and not config_name:
    return cls, cls.make_config(**(overrides or {}))
  if cls is None or config_name not in cls.builder_configs:
    available = [f"{b}/{c}" for b, known in BUILDERS.items() for c in known.builder_configs]
    available += [b for b, known in BUILDERS.items() if hasattr(known, "make_config")]
    raise ValueError(f"Unknown dataset name {name!r}; available: {', '.join(available)}.")
  config = cls.builder_configs[config_name]
  fields = {f.name for f in dataclasses.fields(config)} - {"name"}
  if unknown := set(overrides or {}) - fields:
    raise ValueError(
      f"`overrides` has unknown fields {sorted(unknown)}; {name!r} has {sorted(fields)}."
    )
  return cls, base.with_options(config, overrides or {})


def builder(
  name: str,
  data_dir: str | None = None,
  overrides: Mapping[str, Any] | None = None,
  manual_dir: str | None = None,
) -> tfds.core.DatasetBuilder:
  """Returns the (not necessarily built) TFDS builder of a dataset.

  Args:
    name: `"<builder>/<config>"`, e.g. `"synthetic_affect/pain_binary"`.
    data_dir: TFDS data directory; `None` for TFDS's default (`~/tensorflow_datasets`).
    overrides: Config fields to change, e.g. `{"num_subjects": 12}`; the result is built
      under its own config name, the same however the values are typed (`[1, 3]` or
      `(1.0, 3.0)`; see `base.with_options`).
    manual_dir: where a licensed dataset's downloaded files are (`None`: TFDS's default,
      `<data_dir>/downloads/manual`); only builders of such datasets take it.

  Raises:
    ValueError: if `name` is not a known builder and config (the message lists them),
      `overrides` names a field the config does not have, or `manual_dir` is given for a
      dataset that is not downloaded by hand.
  """
  cls, config = _resolve(name, overrides)
  if not issubclass(cls, base.ManualBuilder):
    if manual_dir is not None:
      raise ValueError(f"{name!r} is not downloaded by hand: it takes no `manual_dir`.")
    return cls(config=config, data_dir=data_dir, file_format="array_record")
  return cls(config=config, data_dir=data_dir, file_format="array_record", manual_dir=manual_dir)


def _scan_keys(schema: schema_lib.Schema) -> tuple[str, ...]:
  """The small per-example columns read once when a dataset is opened."""
  keys = ["index", "y"]
  if schema.has_subject:
    keys.append("subject")
  if schema.has_split:
    keys.append("split")
  return tuple(keys)


def canonical_keys(schema: schema_lib.Schema) -> tuple[str, ...]:
  """Every canonical column of a dataset (see :mod:`mtpkd_jax.data.schema`)."""
  inputs = [key for name in schema.names for key in schema.input_keys(name)]
  return (*inputs, *_scan_keys(schema))


def _converter(
  schema: schema_lib.Schema, target_keys: Sequence[str], dtypes: Mapping[str, np.dtype]
):
  """``convert(records, keys)``: TFDS records -> canonical columns ``[n, ...]``.

  ``dtypes`` holds the stored features' dtypes (TFDS decodes scalars to Python numbers).
  """
  regression = schema.task.kind == "regression"

  def column(records, key):
    return np.stack([np.asarray(r[key], dtype=dtypes[key]) for r in records])

  def convert(records: list[dict], keys: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
      if key == "y":
        parts = [column(records, k) for k in target_keys]
        y = parts[0] if len(parts) == 1 else np.stack(parts, axis=-1)
        out[key] = y.reshape(len(records), -1).astype(np.float32) if regression else y
      else:
        out[key] = column(records, key)
    return out

  return convert


@dataclasses.dataclass(frozen=True)
class Dataset:
  """An opened dataset: its schema, its examples, and the small columns every run needs.

  Attributes:
    name: the dataset's name, e.g. ``"synthetic_affect/pain_binary"``.
    description: where it comes from (the name, or a features file's path), for messages.
    schema: its :class:`~mtpkd_jax.data.schema.Schema`.
    table: the canonical columns of every example, in ``index`` order (in memory, or read on
      demand from the ``array_record`` files).
    y: ``[N]`` class indices or ``[N, K]`` targets.
    subject: ``[N]`` subject ids, or ``None``.
    split: ``[N]`` official split codes into ``schema.SPLITS``, or ``None``.
    extra: the stored array features beyond the canonical ones (e.g. Aff-Wild2's
      ``frame_targets``), read from disk on demand, in ``index`` order.
    fingerprint: identifies the dataset's content (builder, config, version, schema).
    in_memory: whether ``table`` is held in memory.
    build_report: the report of the build that opening the dataset ran (units skipped or
      repaired, examples dropped for corrupt or missing files), or ``None`` when it was built
      before or its builder keeps no report.
  """

  name: str
  description: str
  schema: schema_lib.Schema
  table: table_lib.Table
  y: np.ndarray
  subject: np.ndarray | None
  split: np.ndarray | None
  extra: table_lib.Table
  fingerprint: str
  in_memory: bool
  build_report: report.BuildReport | None = None

  def __len__(self) -> int:
    return len(self.y)


def open_dataset(
  name: str,
  data_dir: str | None = None,
  overrides: Mapping[str, Any] | None = None,
  *,
  in_memory: bool | None = None,
  chunk_size: int = 256,
  num_workers: int | None = None,
) -> Dataset:
  """Builds a dataset if needed and opens it for random access.

  The small columns (``y``, ``subject``, ``split``) are read once, ``chunk_size`` examples at
  a time; the others stay on disk unless the dataset is read into memory.

  Args:
    name: ``"<builder>/<config>"``, e.g. ``"synthetic_affect/pain_binary"``, or a builder of
      user files (``"features_npz"``) with its options in ``overrides``.
    data_dir: TFDS data directory; ``None`` for TFDS's default (``~/tensorflow_datasets``).
    overrides: config fields to change (or a user-file builder's options).
    in_memory: read every example into memory (fast for small data); ``None`` does so when
      the examples take less than ``IN_MEMORY_BYTES``. Both give identical tables.
    chunk_size: examples read at once.
    num_workers: processes a build of a licensed dataset loads its units in (``None``: one
      per core; see ``ManualBuilder.download_and_prepare``); other builds ignore it.

  Returns:
    The :class:`Dataset`, examples in ``index`` order. A build that skipped, dropped or repaired
    anything logs its report's summary as a warning; the report is the dataset's ``build_report``.

  Raises:
    ValueError: as `builder`, or on a dataset whose file fails its checks.
  """
  dataset_builder = builder(name, data_dir, overrides)
  if isinstance(dataset_builder, base.ManualBuilder):
    built = dataset_builder.download_and_prepare(num_workers=num_workers)
  else:
    built = dataset_builder.download_and_prepare()
  if built is not None and (built.skipped or built.dropped or built.repaired):
    # Training builds on first use, where no one reads the JSON report: say what was lost.
    logging.warning("%s\nReport: %s", built.summary(), dataset_builder.report_path)
  schema = dataset_builder.schema
  # Decoding only the features read (`records.Source`), else with TFDS's data source.
  source = records.Source.of(dataset_builder) or dataset_builder.as_data_source(split="train")
  features_info = dataset_builder.info.features
  dtypes = {key: features_info[key].np_dtype for key in features_info}
  convert = _converter(schema, dataset_builder.target_keys, dtypes)
  positions = np.arange(len(source))
  raw = table_lib.RecordTable(source, positions, canonical_keys(schema), convert)
  scanned = [raw.take(c, _scan_keys(schema)) for c in _ranges(len(source), chunk_size)]
  small = {k: np.concatenate([c[k] for c in scanned]) for k in _scan_keys(schema)}
  # Records are stored in TFDS's shuffled order; examples are served in `index` order.
  order = np.argsort(small["index"], kind="stable")
  small = {k: v[order] for k, v in small.items()}
  table = table_lib.RecordTable(source, order, canonical_keys(schema), convert)
  numeric = [k for k, d in dtypes.items() if np.dtype(d).kind != "O"]  # Not text.
  extra_keys = tuple(k for k in numeric if k not in table.keys)
  extra = table_lib.RecordTable(source, order, extra_keys, convert)
  if in_memory is None:
    in_memory = schema.example_bytes * len(order) <= IN_MEMORY_BYTES
  if in_memory:
    chunks = [table.take(c) for c in _ranges(len(order), chunk_size)]
    table = table_lib.ArrayTable({k: np.concatenate([c[k] for c in chunks]) for k in table.keys})
  config = dataset_builder.builder_config
  identity = f"{type(dataset_builder).__name__}/{config.name}/{dataset_builder.info.version}"
  return Dataset(
    name=name,
    description=getattr(config, "path", None) or name,
    schema=schema,
    table=table,
    y=small["y"],
    subject=small.get("subject"),
    split=small.get("split"),
    extra=extra,
    fingerprint=hashlib.sha1(f"{identity}:{schema.fingerprint()}".encode()).hexdigest()[:16],
    in_memory=in_memory,
    build_report=built,
  )


def _ranges(num: int, chunk_size: int) -> list[np.ndarray]:
  return [np.arange(s, min(s + chunk_size, num)) for s in range(0, num, chunk_size)]


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool) -> int:
  """Number of batches in one pass over `num_examples` examples."""
  if drop_remainder:
    return num_examples // batch_size
  return -(-num_examples // batch_size)


def _checked_indices(name: str, indices, size: int) -> np.ndarray:
  """`indices` as an array, or a `ValueError` naming argument `name`."""
  indices = np.asarray(indices)
  if (
    indices.ndim != 1
    or indices.size == 0
    or not np.issubdtype(indices.dtype, np.integer)
    or not np.all((0 <= indices) & (indices < size))
  ):
    raise ValueError(
      f"`{name}` must be a non-empty 1-D integer array with values in [0, {size}), got {indices!r}."
    )
  return indices


def _batch_rows(indices: np.ndarray, batch_size: int, seed, epoch_steps: int, num_epochs):
  """`rows(step)`: the examples of batch `step`, epochs of `indices` shuffled by `seed`.

  A batch never straddles two epochs; a `seed` of `None` keeps the order of `indices`.
  """
  num_examples = len(indices)
  order = grain.MapDataset.source(indices)
  if seed is not None:
    # Grain reshuffles epoch `e` with `seed + e`; mixing the seed first keeps runs with
    # nearby seeds from sharing epoch orders.
    order = order.shuffle(int(np.random.SeedSequence(seed).generate_state(1)[0]))
  order = order.repeat(num_epochs)

  def rows(step: int) -> np.ndarray:
    epoch, position = divmod(step, epoch_steps)
    start = epoch * num_examples + position * batch_size
    stop = epoch * num_examples + min(position * batch_size + batch_size, num_examples)
    return np.array([order[i] for i in range(start, stop)])

  return rows


def batch_dataset(
  table: table_lib.Table | Mapping[str, np.ndarray],
  indices: np.ndarray,
  *,
  batch_size: int,
  seed: int | None,
  drop_remainder: bool,
  num_epochs: int | None = 1,
  keys: Sequence[str] | None = None,
  num_shards: int = 1,
  shard_index: int = 0,
  extra_indices: np.ndarray | None = None,
  extra_batch_size: int = 0,
) -> grain.MapDataset:
  """Random-access batches: element `s` is batch number `s` of the run.

  Epoch `e` visits every example of `indices` once, in an order that depends only on
  `(seed, e)`; batches never straddle two epochs. So `batch_dataset(...)[s]` is the same
  batch whenever it is asked for, which is what resuming from step `s` needs. Only the
  batch's examples are read from `table`. With `num_shards > 1` (one shard per process of a
  multi-process run), element `s` is block `shard_index` of the rows of that global batch,
  so each process reads only its rows and the blocks together are the one-process batch.

  Args:
    table: The examples (a `Table`, or columns `[N, ...]` in memory).
    indices: Integer array of shape `[n]`: the examples to draw from (e.g. a fold's
      `train` indices).
    batch_size: Examples per batch.
    seed: Shuffle seed; `None` keeps the order of `indices` in every epoch (evaluation).
    drop_remainder: Whether to drop each epoch's last partial batch (training).
    num_epochs: Number of passes; `None` for endless.
    keys: The columns to return; `None` for all.
    num_shards: The number of blocks every batch is split into (processes).
    shard_index: The block returned, in `[0, num_shards)`.
    extra_indices: Examples of a second stream (e.g. a student's unlabelled ones): every
      batch's `batch_size` rows are followed by `extra_batch_size` of these, drawn the same
      way in endless epochs of their own (their order from `seed` too, but not the first
      stream's); the shards split the joined batch. `None`: no second stream.
    extra_batch_size: The second stream's rows in every batch.

  Returns:
    A `grain.MapDataset` of dicts of arrays with a leading `[batch]` axis
    (`[(batch_size + extra_batch_size) // num_shards]` rows with shards).

  Raises:
    ValueError: on an empty `indices`, a non-positive `batch_size` or `num_epochs`, an
      epoch with no batch, an unknown column, or shards that do not split every batch.
  """
  if not isinstance(table, table_lib.Table):
    table = table_lib.ArrayTable(table)
  indices = _checked_indices("indices", indices, len(table))
  if batch_size < 1:
    raise ValueError(f"`batch_size` must be positive, got {batch_size}.")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"`num_epochs` must be positive or None, got {num_epochs}.")
  extra = None
  if extra_indices is not None:
    extra = _checked_indices("extra_indices", extra_indices, len(table))
    if not 1 <= extra_batch_size <= len(extra) or not drop_remainder:
      raise ValueError(
        f"`extra_batch_size` must be in [1, {len(extra)}] (the `extra_indices`) with "
        f"`drop_remainder`=True, got {extra_batch_size} and {drop_remainder}."
      )
  joined = batch_size + (extra_batch_size if extra is not None else 0)
  if not 0 <= shard_index < num_shards or (
    num_shards > 1 and (joined % num_shards or not drop_remainder)
  ):
    raise ValueError(
      f"`shard_index`={shard_index} must be in [0, `num_shards`={num_shards}), and with "
      f"shards every batch must split evenly: its {joined} rows a multiple of "
      f"`num_shards` and `drop_remainder`=True (got {drop_remainder})."
    )
  keys = table.keys if keys is None else tuple(keys)
  if unknown := sorted(set(keys) - set(table.keys)):
    raise ValueError(f"`keys` has unknown columns {unknown}; available: {list(table.keys)}.")
  num_examples = len(indices)
  epoch_steps = steps_per_epoch(num_examples, batch_size, drop_remainder)
  if epoch_steps == 0:
    raise ValueError(
      f"`batch_size`={batch_size} exceeds the {num_examples} examples with "
      "`drop_remainder`=True: an epoch would have no batch."
    )

  rows = _batch_rows(indices, batch_size, seed, epoch_steps, num_epochs)
  if extra is not None:
    extra_steps = steps_per_epoch(len(extra), extra_batch_size, drop_remainder=True)
    extra_seed = None if seed is None else (seed, 1)
    extra_rows = _batch_rows(extra, extra_batch_size, extra_seed, extra_steps, None)

  def batch(step: int) -> dict[str, np.ndarray]:
    chosen = rows(step)
    if extra is not None:
      chosen = np.concatenate([chosen, extra_rows(step)])
    share = len(chosen) // num_shards
    return table.take(chosen[shard_index * share : (shard_index + 1) * share], keys)

  total_steps = sys.maxsize if num_epochs is None else num_epochs * epoch_steps
  return grain.MapDataset.range(total_steps).map(batch)


def batches(
  table: table_lib.Table | Mapping[str, np.ndarray],
  indices: np.ndarray,
  *,
  batch_size: int,
  seed: int | None,
  drop_remainder: bool,
  num_epochs: int | None = 1,
  start_step: int = 0,
  keys: Sequence[str] | None = None,
  read_ahead: int = READ_AHEAD,
) -> Iterator[dict[str, np.ndarray]]:
  """Iterates over batches `start_step, start_step + 1, ...` of `batch_dataset`.

  A run resumed at step `s` gets exactly the batches an uninterrupted run gets from `s` on.

  Args:
    table: As for `batch_dataset`.
    indices: As for `batch_dataset`.
    batch_size: As for `batch_dataset`.
    seed: As for `batch_dataset`.
    drop_remainder: As for `batch_dataset`.
    num_epochs: As for `batch_dataset`.
    start_step: The first batch to yield (e.g. the step restored from a checkpoint).
    keys: As for `batch_dataset`.
    read_ahead: Batches read ahead in as many threads while one is used (`0`: each read
      when asked for); the batches are the same.

  Returns:
    An iterator of dicts of arrays with a leading `[batch]` axis.

  Raises:
    ValueError: as `batch_dataset`, or on a negative `start_step`.
  """
  if start_step < 0:
    raise ValueError(f"`start_step` must be non-negative, got {start_step}.")
  dataset = batch_dataset(
    table,
    indices,
    batch_size=batch_size,
    seed=seed,
    drop_remainder=drop_remainder,
    num_epochs=num_epochs,
    keys=keys,
  )
  options = grain.ReadOptions(num_threads=read_ahead, prefetch_buffer_size=read_ahead)
  return iter(dataset[start_step:].to_iter_dataset(options))


class ReadAhead:
  """`step -> batch` of a `batch_dataset`, the next batches read in threads meanwhile.

  Training asks for batch `s` while the device runs step `s - 1`; the batches `s + 1` to
  `s + depth` are then being read in `depth` threads, so a step waits for a read only when
  reading is slower than the device. A batch is a pure function of its step, so the
  batches are exactly those of `dataset[s]` in any order of asking (a resumed run included);
  a step asked for out of turn is read then.

  Args:
    dataset: The batches (`batch_dataset`).
    depth: Batches read ahead; `0` reads each batch when asked for.

  Raises:
    ValueError: on a negative `depth`.
  """

  def __init__(self, dataset: grain.MapDataset, depth: int = READ_AHEAD):
    if depth < 0:
      raise ValueError(f"`depth` must be non-negative, got {depth}.")
    self._dataset, self._depth = dataset, depth
    self._pending: dict[int, futures.Future] = {}
    # Idle threads end when the executor is garbage collected with this object.
    self._executor = futures.ThreadPoolExecutor(depth, "read-ahead") if depth else None

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    """Batch `step` of the dataset."""
    if self._executor is None:
      return self._dataset[step]
    ahead = range(step + 1, min(step + 1 + self._depth, len(self._dataset)))
    for stale in [s for s in self._pending if s != step and s not in ahead]:
      self._pending.pop(stale).cancel()
    for s in ahead:
      if s not in self._pending:
        self._pending[s] = self._executor.submit(self._dataset.__getitem__, s)
    future = self._pending.pop(step, None)
    return self._dataset[step] if future is None else future.result()
