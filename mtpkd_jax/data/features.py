"""The features format: your own pre-extracted features in one ``.npz`` file.

Its keys::

  | key | shape, dtype | meaning |
  |---|---|---|
  | ``x_<modality>`` | float ``[N, d]`` or ``[N, L, d]`` | one per modality, any name (``x_face``) |
  | ``mask_<modality>`` | bool ``[N, L]``, optional | valid steps: a prefix of each row, not empty |
  | ``y`` | int ``[N]``, or float ``[N]`` / ``[N, K]`` | class index, or regression targets |
  | ``class_names`` / ``target_names`` | str ``[C]`` / ``[K]``, optional | names for the report |
  | ``subject`` | int ``[N]``, optional | subject-independent folds group by it |
  | ``split`` | str ``[N]``, optional | ``train`` / ``val`` / ``test``, used instead of folds |

The file is read with ``allow_pickle=False`` and checked before anything is built or
trained (:func:`inspect_npz`); every problem is a ``ValueError`` naming the file, the key and
what was expected. It is then converted, example by example, into a TFDS ``array_record``
dataset (:class:`FeaturesNpz`), read through the same loading path as every other dataset.
Numeric arrays stored uncompressed (``np.savez``) are read from the file a chunk of rows at a
time while converting (plain reads, not a memory map), so a file larger than memory converts
in bounded memory; ``np.savez_compressed`` members are decompressed whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from mtpkd_jax.data import records
from mtpkd_jax.data import schema as schema_lib

TASKS = (None, "classification", "regression")
_CHUNK = 512  # Examples checked and written at once.


def _fail(path: Path, message: str):
  raise ValueError(f"{path}: {message}")


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
  """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``f``, leaving it at the data."""
  major, _ = np.lib.format.read_magic(f)
  read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
  return read(f)


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shape and dtype of every array of the npz, from the ``.npy`` headers alone."""
  if not path.is_file():
    _fail(path, "no such file (expected a features .npz file).")
  if not zipfile.is_zipfile(path):
    _fail(path, "not an .npz file (expected a zip archive of .npy arrays, as np.savez writes).")
  headers = {}
  with zipfile.ZipFile(path) as archive:
    for info in archive.infolist():
      if not info.filename.endswith(".npy"):
        _fail(path, f"member {info.filename!r} is not a .npy array.")
      with archive.open(info) as f:
        shape, _, dtype = _read_header(f)
        header_size = f.tell()
      key = info.filename.removesuffix(".npy")
      declared = math.prod(shape) * dtype.itemsize
      if not dtype.hasobject and declared != info.file_size - header_size:
        _fail(
          path,
          f"key {key!r} declares {dtype} {list(shape)} ({declared} bytes) but holds "
          f"{info.file_size - header_size} bytes: the file is damaged or was cut short (an "
          "interrupted write?). Write it again with np.savez.",
        )
      if dtype.hasobject:
        _fail(
          path,
          f"key {key!r} is a pickled object array; the features format holds numeric, bool "
          "and string arrays only (it is read with allow_pickle=False). Store strings as a "
          "fixed-width str array, e.g. np.array(names, dtype=str).",
        )
      headers[key] = (tuple(shape), dtype)
  return headers


class _Rows:
  """Rows of an uncompressed ``.npy`` member, read from the file on demand.

  Plain reads, not a memory map: the process holds only the rows it asked for, so converting
  a file larger than memory stays within a chunk's memory.
  """

  def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype):
    self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows: slice | int) -> np.ndarray:
    single = not isinstance(rows, slice)
    start, stop, _ = (slice(rows, rows + 1) if single else rows).indices(self.shape[0])
    row = int(np.prod(self.shape[1:], dtype=np.int64))
    with open(self.path, "rb") as f:
      f.seek(self.offset + start * row * self.dtype.itemsize)
      data = np.fromfile(f, self.dtype, count=max(stop - start, 0) * row)
    data = data.reshape((-1, *self.shape[1:]))
    return data[0] if single else data

  def __array__(self, dtype=None, copy=None):
    del copy
    return self[:] if dtype is None else self[:].astype(dtype)


def _member(path: Path, key: str) -> np.ndarray | _Rows:
  """One array of the npz: read row by row when stored uncompressed, else loaded whole."""
  with zipfile.ZipFile(path) as archive:
    info = archive.getinfo(f"{key}.npy")
    if info.compress_type == zipfile.ZIP_STORED:
      with archive.open(info) as f:
        shape, fortran, dtype = _read_header(f)
        header_size = f.tell()
      with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
      name_len = int.from_bytes(local[26:28], "little")
      extra_len = int.from_bytes(local[28:30], "little")
      if shape and not fortran and dtype.kind in "biuf":
        offset = info.header_offset + 30 + name_len + extra_len + header_size
        return _Rows(path, offset, tuple(shape), dtype)
  with np.load(path, allow_pickle=False) as npz:
    return npz[key]


@dataclasses.dataclass(frozen=True)
class Inspection:
  """What :func:`inspect_npz` found: the schema and the small per-example arrays."""

  schema: schema_lib.Schema
  num_examples: int
  y: np.ndarray
  subject: np.ndarray | None
  split: np.ndarray | None  # int codes into schema.SPLITS


def _names(path, headers, key, count, default_prefix) -> tuple[str, ...]:
  if key not in headers:
    return tuple(f"{default_prefix}{i}" for i in range(count))
  names = _member(path, key)
  if names.dtype.kind not in "US" or names.shape != (count,):
    _fail(
      path, f"key {key!r} must be a str array of shape [{count}], got {names.dtype} {names.shape}."
    )
  return tuple(str(n) for n in names)


def _check_mask(path: Path, key: str, mask: np.ndarray) -> None:
  """Fails unless every row of ``mask`` (``[N, L]``) is ``True`` on a prefix of one step or more.

  Sequence encoders take a row's valid steps to be its first ``mask.sum()`` (e.g. the BiGRU's
  lengths), so a mask with holes would silently mix padding into the sequence.
  """
  lengths = mask.sum(1)
  if not np.all(lengths):
    _fail(path, f"key {key!r} has no valid step in example {int(np.argmin(lengths))} (all False).")
  prefix = np.all(mask == (np.arange(mask.shape[1]) < lengths[:, None]), axis=1)
  if not np.all(prefix):
    row = int(np.argmin(prefix))
    _fail(
      path,
      f"key {key!r} must be True on a prefix of each row, then False; example {row} is "
      f"{mask[row].astype(int).tolist()}.",
    )


def inspect_npz(path: str | Path, task: str | None = None) -> Inspection:
  """Checks a features file and describes it, reading only its headers and small arrays.

  Args:
    path: the ``.npz`` file.
    task: ``classification`` or ``regression``; ``None`` infers it from ``y``'s dtype (int:
      classification, float: regression). Needed where that is ambiguous, e.g. classes stored
      as floats.

  Returns:
    The :class:`Inspection`.

  Raises:
    ValueError: naming the file, the key and what was expected: not an npz, a pickled
      object array, an array whose header declares more or less data than it holds (a
      damaged or cut file), no ``x_`` key, arrays whose N differ or are empty, fewer than 3
      examples, a mask on a vector modality, a mask of the wrong shape or dtype or whose
      row is not a prefix of one valid step or more, a single class,
      ``y`` of the wrong rank or dtype, a non-integer or negative class index, a class
      with no example, a ``split`` value other than train/val/test or a split with no test
      example, a non-integer ``subject``.
  """
  path = Path(path)
  if task not in TASKS:
    raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
  headers = _headers(path)
  x_keys = sorted(k for k in headers if k.startswith("x_"))
  if not x_keys:
    _fail(path, f"no modality: expected keys `x_<modality>`, found {sorted(headers)}.")
  if "y" not in headers:
    _fail(path, f"no `y` key (the targets); found {sorted(headers)}.")
  per_example = [k for k in headers if k not in ("class_names", "target_names")]
  sizes = {k: headers[k][0][0] if headers[k][0] else None for k in per_example}
  if len(set(sizes.values())) != 1:
    _fail(path, f"arrays must share their first (example) axis N, got {sizes}.")
  num = sizes["y"]
  if num == 0:
    _fail(path, f"key 'y' holds no example: every array has N = 0, got {sizes}.")
  if num < 3:
    _fail(
      path,
      f"holds {num} example(s) (N = {num}); training, validation and test need one each at "
      "least: write a file of 3 examples or more.",
    )

  modalities = []
  for key in x_keys:
    name = key.removeprefix("x_")
    shape, dtype = headers[key]
    if dtype.kind not in "fiu" or len(shape) not in (2, 3):
      _fail(path, f"key {key!r} must be a numeric [N, d] or [N, L, d] array, got {dtype} {shape}.")
    mask_key = schema_lib.mask_key(name)
    masked = mask_key in headers
    if masked:
      mask_shape, mask_dtype = headers[mask_key]
      if len(shape) != 3:
        _fail(
          path,
          f"key {mask_key!r} masks the steps of a sequence, but {key!r} is a vector "
          f"{list(shape)} ([N, d], no steps): drop {mask_key!r}, or store {key!r} as "
          "[N, L, d] sequences.",
        )
      if mask_shape != shape[:2] or mask_dtype != np.bool_:
        _fail(
          path,
          f"key {mask_key!r} must be bool {list(shape[:2])} for {key!r} "
          f"{list(shape)}, got {mask_dtype} {list(mask_shape)}.",
        )
      _check_mask(path, mask_key, np.asarray(_member(path, mask_key)))
    kind = "vector" if len(shape) == 2 else "sequence"
    modalities.append(schema_lib.Modality(name, kind, tuple(shape[1:]), "float32", masked))
  for key in headers:
    if key.startswith("mask_") and f"x_{key.removeprefix('mask_')}" not in headers:
      _fail(path, f"key {key!r} has no matching `x_{key.removeprefix('mask_')}`.")

  y = np.asarray(_member(path, "y"))
  task = task or ("classification" if y.dtype.kind in "iub" else "regression")
  if task == "classification":
    if y.ndim != 1:
      _fail(path, f"key 'y' must be [N] class indices for classification, got shape {y.shape}.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
      _fail(path, "key 'y' holds non-integer values; class indices must be integers.")
    if y.dtype.kind not in "iuf":
      _fail(path, f"key 'y' must hold integer class indices, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0:
      _fail(path, f"key 'y' holds a negative class index ({y.min()}).")
    has_names = "class_names" in headers
    num_classes = headers["class_names"][0][0] if has_names else int(y.max()) + 1
    names = _names(path, headers, "class_names", num_classes, "class")
    if y.max() >= num_classes:
      _fail(path, f"key 'y' holds class {y.max()} but `class_names` names {num_classes} classes.")
    empty = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if empty:
      _fail(path, f"classes {[names[c] for c in empty]} have no example in 'y'.")
    if num_classes < 2:
      _fail(
        path,
        f"key 'y' holds one class ({names[0]!r}) in its {num} examples; classification needs "
        "two classes or more. For regression targets store 'y' as float (or set "
        "--config.task=regression).",
      )
  else:
    if y.dtype.kind not in "fiu" or y.ndim not in (1, 2):
      _fail(
        path,
        f"key 'y' must be float [N] or [N, K] targets for regression, got {y.dtype} {y.shape}.",
      )
    y = y.astype(np.float32).reshape(num, -1)
    if not np.all(np.isfinite(y)):
      _fail(path, f"key 'y' holds NaN or Inf (example {int(np.argmin(np.isfinite(y).all(1)))}).")
    names = _names(path, headers, "target_names", y.shape[1], "target")

  subject = None
  if "subject" in headers:
    subject = np.asarray(_member(path, "subject"))
    if subject.ndim != 1 or subject.dtype.kind not in "iu":
      _fail(path, f"key 'subject' must be int [N], got {subject.dtype} {subject.shape}.")
    subject = subject.astype(np.int64)
  split = None
  if "split" in headers:
    values = np.asarray(_member(path, "split"))
    if values.dtype.kind not in "US" or values.ndim != 1:
      _fail(path, f"key 'split' must be str [N], got {values.dtype} {values.shape}.")
    values = values.astype(str)
    if bad := sorted(set(values.tolist()) - set(schema_lib.SPLITS)):
      _fail(path, f"key 'split' holds {bad}; expected only {list(schema_lib.SPLITS)}.")
    split = np.array([schema_lib.SPLITS.index(v) for v in values], dtype=np.int64)
    for needed in ("train", "test"):
      if not np.any(split == schema_lib.SPLITS.index(needed)):
        _fail(path, f"key 'split' has no {needed!r} example.")
    if task == "classification":
      train_classes = set(np.unique(y[split == 0]).tolist())
      if missing := sorted(set(range(len(names))) - train_classes):
        _fail(path, f"classes {[names[c] for c in missing]} have no example in split 'train'.")
  schema = schema_lib.Schema(
    tuple(modalities), schema_lib.Task(task, names), subject is not None, split is not None
  )
  return Inspection(schema, num, y, subject, split)


def fingerprint(path: str | Path) -> str:
  """SHA-1 of the file's bytes (16 hex digits), read in chunks."""
  digest = hashlib.sha1()
  with open(path, "rb") as f:
    while block := f.read(1 << 24):
      digest.update(block)
  return digest.hexdigest()[:16]


@dataclasses.dataclass(eq=False)
class FeaturesNpzConfig(tfds.core.BuilderConfig):
  """One features file. Attributes: ``path`` (the npz) and ``task`` (``None``: inferred)."""

  path: str = ""
  task: str | None = None


class FeaturesNpz(records.Written):
  """A features ``.npz`` file as canonical examples in a TFDS ``array_record`` dataset.

  It acts as a TFDS builder for :mod:`mtpkd_jax.data.pipeline` (``download_and_prepare``,
  ``as_data_source``, ``info``) but writes its records with :mod:`mtpkd_jax.data.records`,
  streaming from the file, so that converting a file larger than memory (or than TFDS's
  1 GB in-memory shuffle buffer) needs neither the memory nor TensorFlow. Records keep the
  file's order; one config per file content (:meth:`make_config`).
  """

  name = "features_npz"
  builder_configs: dict[str, FeaturesNpzConfig] = {}  # One config per file: `make_config`.
  target_keys = ("y",)

  def __init__(
    self, *, config: FeaturesNpzConfig, data_dir: str | None = None, file_format: str = ""
  ):
    del file_format  # Always array_record.
    self.builder_config = config
    root = Path(data_dir or tfds.core.constants.DATA_DIR).expanduser()
    self.data_dir = root / self.name / config.name / "1.0.0"

  @classmethod
  def make_config(cls, path: str, task: str | None = None) -> FeaturesNpzConfig:
    """The config of one file, named by its content, so an edited file is built anew."""
    if not path:
      raise ValueError("`features_path` must name a features .npz file, got an empty path.")
    path = str(Path(path).expanduser().resolve())
    _headers(Path(path))  # Fails early on a missing or malformed file.
    digest = hashlib.sha1(f"{fingerprint(path)}:{task}".encode()).hexdigest()[:16]
    return FeaturesNpzConfig(name=f"npz_{digest}", path=path, task=task, description=path)

  @property
  def inspection(self) -> Inspection:
    """The file's checked headers and schema (read once)."""
    if not hasattr(self, "_inspection"):
      config = self.builder_config
      self._inspection = inspect_npz(config.path, config.task)
    return self._inspection

  @property
  def schema(self) -> schema_lib.Schema:
    """The dataset's schema, from the file's keys."""
    return self.inspection.schema

  def download_and_prepare(self) -> None:
    """Converts the file (once): checks every value, then writes the records."""
    if records.is_written(self.data_dir):
      return
    features = tfds.features.FeaturesDict(canonical_features(self.schema))
    description = f"Features file {self.builder_config.path}"
    examples = self._generate_examples()
    records.write(self.data_dir, self.name, features, examples, description=description)

  def _generate_examples(self) -> Iterator[dict[str, np.ndarray]]:
    path, info = Path(self.builder_config.path), self.inspection
    arrays = {m.name: _member(path, f"x_{m.name}") for m in info.schema.modalities}
    masks = {  # Small ([N, L] bool): read whole.
      m.name: np.asarray(_member(path, schema_lib.mask_key(m.name)))
      for m in info.schema.modalities
      if m.masked
    }
    for start in range(0, info.num_examples, _CHUNK):
      stop = min(start + _CHUNK, info.num_examples)
      chunk = {name: np.asarray(a[start:stop], dtype=np.float32) for name, a in arrays.items()}
      for name, values in chunk.items():
        if not np.all(np.isfinite(values)):
          bad = start + int(np.argmin(np.isfinite(values).reshape(len(values), -1).all(1)))
          _fail(path, f"key 'x_{name}' holds NaN or Inf (example {bad}).")
      for i in range(start, stop):
        example = {name: chunk[name][i - start] for name in arrays}
        example |= {schema_lib.mask_key(n): np.asarray(m[i], bool) for n, m in masks.items()}
        example |= {"y": info.y[i], "index": np.int64(i)}
        if info.subject is not None:
          example["subject"] = info.subject[i]
        if info.split is not None:
          example["split"] = info.split[i]
        yield example


def canonical_features(schema: schema_lib.Schema) -> dict[str, tfds.features.FeatureConnector]:
  """TFDS features of canonical examples (see :mod:`mtpkd_jax.data.schema`)."""
  features = {}
  for m in schema.modalities:
    features[m.name] = tfds.features.Tensor(
      shape=m.shape, dtype=np.dtype(m.dtype), encoding=tfds.features.Encoding.BYTES
    )
    if m.masked:
      features[schema_lib.mask_key(m.name)] = tfds.features.Tensor(
        shape=m.shape[:1], dtype=np.bool_, encoding=tfds.features.Encoding.BYTES
      )
  if schema.task.kind == "classification":
    features["y"] = tfds.features.Tensor(shape=(), dtype=np.int64)
  else:
    features["y"] = tfds.features.Tensor(shape=(schema.task.num_outputs,), dtype=np.float32)
  features["index"] = tfds.features.Tensor(shape=(), dtype=np.int64)
  if schema.has_subject:
    features["subject"] = tfds.features.Tensor(shape=(), dtype=np.int64)
  if schema.has_split:
    features["split"] = tfds.features.Tensor(shape=(), dtype=np.int64)
  return features
