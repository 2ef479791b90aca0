"""CMU-MOSI from the CMU-MultimodalSDK's computational sequences (``.csd``, HDF5).

An example is an opinion segment (``<video_id>[<i>]``, ``i`` 0-based over the video's label
intervals, as the SDK's ``align`` names them) with its words: ``text`` holds the GloVe
vectors of the words whose interval's midpoint lies in the segment (silences, ``sp``,
dropped), ``audio`` (COVAREP) and ``visual`` (Facet or OpenFace) the mean of the feature
rows overlapping each word's interval (the SDK's alignment by averaging), ``-inf`` and NaN
set to 0 as MulT and MMSA do. Sequences hold at most ``max_words`` words, masked. ``y`` is
the sentiment score in ``[-3, 3]`` (``sentiment``) or negative (< 0) vs non-negative
(``binary``); the score is kept as ``sentiment`` on every example. A segment that no word
falls in is dropped (lost data: it counts toward ``max_bad_fraction``); a video in none of the
standard folds is excluded (the protocol leaves it out) and listed.

Both generations of file names are found (``CMU_MOSI_TimestampedWordVectors.csd`` and
``..._1.1.csd``, ``CMU_MOSI_Visual_Facet_41.csd`` and ``CMU_MOSI_VisualFacet_4.1.csd``, ...);
group names inside the files are not assumed (the SDK opens the first one). Protocol: the
SDK's standard folds (52 train, 10 valid, 31 test videos; 1284 / 229 / 686 segments).
The SDK has no speaker ids: videos are the subjects.

The MulT / MMSA pickles (``mosi_data.pkl``, ``aligned_50.pkl``, ``unaligned_50.pkl``) are
read only with ``allow_pickle=True``, which logs a warning: unpickling runs whatever code the
file holds. Each modality keeps its own steps (in unaligned pickles audio and vision are longer
than the text) and mask: MMSA's ``audio_lengths`` / ``vision_lengths`` and, for the text, the
attention mask in ``text_bert``; MulT's pickles hold no lengths and MulT reads every step, so
all are valid. Nothing is cut: a length outside its sequence stops the build.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data.builders import base
from mtpkd_jax.data.builders.mosi_folds import FOLDS
from mtpkd_jax.data.builders.report import BadFile
from mtpkd_jax.data.synthetic_sentiment import pad

# Role -> file-name pattern, matching both the current and the older SDK names.
PATTERNS = {
  "text": r"TimestampedWordVectors",
  "words": r"(Modified)?TimestampedWords$",
  "audio": r"COVAREP",
  "labels": r"Opinion_Labels",
}
VISUAL = {
  "facet41": r"Visual_?Facet_?4\.?1",
  "facet42": r"Visual_?Facet_?4\.?2",
  "openface1": r"OpenFace_1",
  "openface2": r"OpenFace_2",
}
TASKS = ("sentiment", "binary")
PICKLE_KEYS = {"text": "text", "audio": "audio", "visual": "vision"}  # Role -> pickle key.


@dataclasses.dataclass(eq=False)
class MosiConfig(base.ManualConfig):
  """The CMU-MOSI builder's settings.

  Attributes:
    task: ``sentiment`` (regression of the score) or ``binary`` (negative vs non-negative).
    visual: the visual features, a key of ``VISUAL``.
    max_words: words per segment kept from the ``.csd`` (the rest cut), masked; a pickle's
      sequences keep their own lengths.
    pickle: a MulT / MMSA pickle (path under ``manual_dir``) to read instead of the ``.csd``.
    allow_pickle: read ``pickle`` (unpickling runs code: only for files you trust).
  """

  task: str = "sentiment"
  visual: str = "facet41"
  max_words: int = 50
  pickle: str = ""
  allow_pickle: bool = False


def _csd(path: Path):
  """``(file, data group)`` of a computational sequence; its one top-level group's ``data``.

  Raises:
    OSError: naming ``path``, if HDF5 cannot read it (e.g. a download cut short).
  """
  try:
    handle = h5py.File(path, "r")
  except OSError as error:
    raise OSError(
      f"{path}: unreadable computational sequence ({error}); a download cut short leaves "
      "such a file: download it again."
    ) from None
  return handle, handle[next(iter(handle.keys()))]["data"]


class Mosi(base.ManualBuilder):
  """CMU-MOSI opinion segments; see the module docstring."""

  name = "mosi"
  builder_configs = {
    t: MosiConfig(name=t, task=t, description=f"CMU-MOSI {t}, SDK standard folds.") for t in TASKS
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
CMU-MOSI: download the computational sequences with the CMU-MultimodalSDK
(`mmdatasdk.cmu_mosi.highlevel`, `.raw` and `.labels`, or from the SDK's download page) and
put the `.csd` files in the folder given as `--manual_dir` (any folder up to two levels
down): CMU_MOSI_TimestampedWordVectors.csd, CMU_MOSI_TimestampedWords.csd, CMU_MOSI_COVAREP.csd,
CMU_MOSI_Visual_Facet_41.csd (or the OpenFace files) and CMU_MOSI_Opinion_Labels.csd. Older
names (CMU_MOSI_TimestampedWordVectors_1.1.csd, CMU_MOSI_VisualFacet_4.1.csd) work too.
"""

  @classmethod
  def write_dummy(cls, root: Path, config: MosiConfig) -> None:
    """Writes dummy files in CMU-MOSI's layout under ``root`` (for tests and smoke runs)."""
    from mtpkd_jax.data.builders.dummy import mosi as dummy

    dummy.write(root)

  def _find(self, manual_dir: Path) -> dict[str, Path]:
    config = self.builder_config
    candidates = sorted(manual_dir.glob("CMU_MOSI_*.csd"))
    candidates += sorted(manual_dir.glob("*/CMU_MOSI_*.csd")) + sorted(
      manual_dir.glob("*/*/CMU_MOSI_*.csd")
    )
    patterns = {**PATTERNS, "visual": VISUAL[config.visual]}
    found = {}
    for role, pattern in patterns.items():
      match = next((p for p in candidates if re.search(pattern, p.stem)), None)
      if match is None and role != "words":
        raise self.missing(f"a CMU_MOSI_*.csd file matching {pattern!r} ({role})", manual_dir)
      if match is not None:
        found[role] = match
    return found

  def _scan(self, manual_dir: Path) -> base.Plan:
    config = self.builder_config
    if config.task not in TASKS or config.visual not in VISUAL or config.max_words < 1:
      raise ValueError(
        f"`task` must be one of {TASKS}, `visual` one of {list(VISUAL)} and `max_words` "
        f"positive; got {config.task!r}, {config.visual!r}, {config.max_words}."
      )
    if config.pickle:
      return self._scan_pickle(manual_dir)
    paths = self._find(manual_dir)
    shapes = {}
    for role in ("text", "audio", "visual"):
      handle, data = _csd(paths[role])
      with handle:
        first = next(iter(data.values()), None)
        if first is None:
          raise self.missing(f"videos in {paths[role].name}", manual_dir)
        shapes[role] = (config.max_words, int(first["features"].shape[1]))
    handle, labels = _csd(paths["labels"])
    with handle:
      videos = sorted(labels.keys())
    split_of = {v: i for i, name in enumerate(schema_lib.SPLITS) for v in FOLDS[name]}
    units = [
      (video, self._loader(video, subject, split_of.get(video), paths))
      for subject, video in enumerate(videos)
    ]
    return base.Plan(self._schema(shapes), units, self._extra())

  def _schema(self, shapes: dict[str, tuple[int, int]]) -> schema_lib.Schema:
    """The schema, with each sequence's ``[steps, features]`` in ``shapes``."""
    config = self.builder_config
    modalities = tuple(
      schema_lib.Modality(role, "sequence", shapes[role], masked=True)
      for role in ("text", "audio", "visual")
    )
    if config.task == "binary":
      task = schema_lib.Task("classification", ("negative", "non_negative"))
    else:
      task = schema_lib.Task("regression", ("sentiment",))
    return schema_lib.Schema(modalities, task, has_subject=True, has_split=True)

  def _extra(self) -> dict:
    return {"sentiment": base.tensor((), np.float32), "segment_id": tfds.features.Text()}

  def _example(self, sequences, masks, score, subject, split, video, segment) -> dict:
    y = np.int64(score >= 0) if self.builder_config.task == "binary" else np.float32([score])
    return {
      **{k: v.astype(np.float32) for k, v in sequences.items()},
      **{schema_lib.mask_key(k): m for k, m in masks.items()},
      "y": y,
      "sentiment": np.float32(score),
      "subject": np.int64(subject),
      "split": np.int64(split),
      "subject_name": video,
      "video_id": video,
      "segment_id": segment,
    }

  def _loader(self, video, subject, split, paths):
    max_words = self.builder_config.max_words

    def read(role):
      try:
        handle, data = _csd(paths[role])
        with handle:
          if video not in data:
            raise BadFile(paths[role], f"has no video {video!r}")
          group = data[video]
          if "features" not in group or "intervals" not in group:
            raise BadFile(paths[role], f"video {video!r} lacks features or intervals")
          features, intervals = group["features"][()], group["intervals"][()]
      except OSError as error:  # The file that failed, whichever of the five it is.
        raise BadFile(paths[role], str(error).removeprefix(f"{paths[role]}: ")) from None
      if intervals.ndim != 2 or len(features) != len(intervals):
        raise BadFile(paths[role], f"video {video!r}: features and intervals differ in length")
      return features, intervals.astype(np.float64)

    def load(report):
      if split is None:
        report.exclude(video, paths["labels"], "in none of the SDK's standard folds")
        return
      labels, segments = read("labels")
      vectors, word_times = read("text")
      streams = {role: read(role) for role in ("audio", "visual")}
      tokens = read("words")[0] if "words" in paths else None
      keep = np.ones(len(vectors), bool)
      if tokens is not None and len(tokens) == len(vectors):
        keep = np.array([_text(np.ravel(t)[0]).strip() != "sp" for t in tokens])
      middle = word_times.mean(axis=1)
      for i, (start, end) in enumerate(segments):
        words = np.flatnonzero(keep & (middle >= start) & (middle < end))[:max_words]
        if not len(words):
          reason = f"no word of {paths['text'].name} in the segment [{start:g}, {end:g}) s"
          report.drop(f"{video}[{i}]", paths["labels"], reason)
          continue
        sequences = {"text": _clean(vectors[words])}
        for role, (features, times) in streams.items():
          sequences[role] = _average(_clean(features), times, word_times[words])
        mask = np.arange(max_words) < len(words)
        sequences = {k: pad(v, max_words) for k, v in sequences.items()}
        masks = {k: mask for k in sequences}
        score = float(np.asarray(labels[i]).reshape(-1)[0])
        yield self._example(sequences, masks, score, subject, split, video, f"{video}[{i}]")

    return load

  def _scan_pickle(self, manual_dir: Path) -> base.Plan:
    config = self.builder_config
    path = manual_dir / config.pickle
    if not config.allow_pickle:
      raise ValueError(
        f"{self.full_name}: reading {path} needs `allow_pickle=True`: unpickling runs any code "
        "the file holds, so set it only for a file you trust."
      )
    if not path.is_file():
      raise self.missing(f"the pickle {config.pickle!r}", manual_dir)
    logging.warning("Unpickling %s (allow_pickle=True): this runs code the file holds.", path)
    with open(path, "rb") as f:
      splits = pickle.load(f)  # noqa: S301  (explicitly allowed by the user)
    names = {"train": "train", "val": "valid", "test": "test"}
    subjects: dict[str, int] = {}  # Video -> subject id, in the order they are met.
    if not all(name in splits for name in names.values()):
      raise ValueError(f"{path}: expected a dict with {list(names.values())}, got {list(splits)}.")
    # The longest split's steps, so that no split is cut.
    shapes = {
      role: (
        max(np.shape(splits[name][key])[1] for name in names.values()),
        np.shape(splits["train"][key])[-1],
      )
      for role, key in PICKLE_KEYS.items()
    }
    units = [
      (
        f"{path.name}:{name}",
        self._pickle_loader(
          path,
          splits[name],
          _lengths(path, name, splits[name]),
          shapes,
          schema_lib.SPLITS.index(split),
          subjects,
        ),
      )
      for split, name in names.items()
    ]
    return base.Plan(self._schema(shapes), units, self._extra())

  def _pickle_loader(self, path, split_data, lengths, shapes, split, subjects):
    def load(report):
      del report
      labels = split_data.get("regression_labels", split_data.get("labels"))
      if labels is None:
        raise BadFile(path, "a split has neither `labels` (MulT) nor `regression_labels` (MMSA)")
      labels = np.asarray(labels, np.float64).reshape(len(labels), -1)[:, 0]
      ids = split_data["id"]
      for n, score in enumerate(labels):
        raw = ids[n]
        name = "$_$".join(_text(x) for x in np.ravel(raw)) if np.ndim(raw) else _text(raw)
        video = re.split(r"\$_\$|\[|_(?=\d+$)", name)[0]
        sequences, masks = {}, {}
        for role, key in PICKLE_KEYS.items():
          steps = shapes[role][0]
          sequences[role] = pad(_clean(split_data[key][n]), steps)
          masks[role] = np.arange(steps) < lengths[role][n]
        subject = subjects.setdefault(video, len(subjects))
        yield self._example(sequences, masks, float(score), subject, split, video, name)

    return load


def _lengths(path: Path, name: str, split_data: dict) -> dict[str, np.ndarray]:
  """Each modality's valid steps in a pickle's split, ``{role: [N]}``.

  Args:
    path: the pickle, for messages.
    name: the split's key in the pickle, for messages.
    split_data: the split: ``{key: [N, steps, features]}`` and, in MMSA's pickles,
      ``audio_lengths`` and ``vision_lengths`` ``[N]`` and ``text_bert`` ``[N, 3, steps]``
      (token ids, attention mask, segment ids).

  Returns:
    ``<key>_lengths`` where the pickle has them, the text's attention mask summed where it
    has ``text_bert``, else every step (MulT's pickles, which MulT reads whole).

  Raises:
    ValueError: naming the key, when it does not give one length per example within the
      steps of its sequence.
  """
  out = {}
  for role, key in PICKLE_KEYS.items():
    count, steps = np.shape(split_data[key])[:2]
    if f"{key}_lengths" in split_data:
      source, lengths = f"{key}_lengths", np.asarray(split_data[f"{key}_lengths"])
    elif key == "text" and "text_bert" in split_data:
      source, lengths = "text_bert", np.asarray(split_data["text_bert"])[:, 1].sum(-1)
    else:
      source, lengths = key, np.full(count, steps)
    if lengths.shape != (count,):
      raise ValueError(
        f"{path}: `{name}`: `{source}` has lengths of shape {lengths.shape}, not one per "
        f"example ({count},)."
      )
    bad = np.flatnonzero((lengths < 0) | (lengths > steps))
    if len(bad):
      raise ValueError(
        f"{path}: `{name}`: `{source}` gives lengths {lengths[bad[:5]].tolist()} (examples "
        f"{bad[:5].tolist()}) outside the {steps} steps of `{key}`: sequences are never cut."
      )
    out[role] = lengths.astype(np.int64)
  return out


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _clean(values: np.ndarray) -> np.ndarray:
  values = np.asarray(values, np.float64)
  return np.where(np.isfinite(values), values, 0.0)


def _average(features: np.ndarray, times: np.ndarray, words: np.ndarray) -> np.ndarray:
  """Mean of the feature rows whose interval overlaps each word's: ``[words, d]``."""
  overlap = (times[None, :, 0] < words[:, None, 1]) & (times[None, :, 1] > words[:, None, 0])
  counts = overlap.sum(axis=1, keepdims=True)
  return (overlap @ features) / np.maximum(counts, 1)
