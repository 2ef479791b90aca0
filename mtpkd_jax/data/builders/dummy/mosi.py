"""Dummy CMU-MOSI computational sequences (``.csd``) in the SDK's HDF5 structure.

``/<root name>/data/<video>/{features [N, D], intervals [N, 2]}`` and
``/<root name>/metadata/<key>`` (JSON in a variable-length string), for the word vectors
(300-d), the words (bytes, silences ``sp``), COVAREP (74-d), Facet 4.1 (47-d) and the
opinion labels (``[segments, 1]`` in ``[-3, 3]``). Video ids come from the standard folds.
The words carry the label, so a model can learn from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from mtpkd_jax.data.builders import mosi_folds

# Role -> (current file name, older file name, root group name, dimension).
FILES = {
  "text": (
    "CMU_MOSI_TimestampedWordVectors",
    "CMU_MOSI_TimestampedWordVectors_1.1",
    "glove_vectors",
    300,
  ),
  "words": ("CMU_MOSI_TimestampedWords", "CMU_MOSI_ModifiedTimestampedWords", "words", 1),
  "audio": ("CMU_MOSI_COVAREP", "CMU_MOSI_COVAREP", "COVAREP", 74),
  "visual": ("CMU_MOSI_Visual_Facet_41", "CMU_MOSI_VisualFacet_4.1", "FACET_4.1", 47),
  "labels": ("CMU_MOSI_Opinion_Labels", "CMU_MOSI_Opinion_Labels", "Opinion Segment Labels", 1),
}


def _write_csd(path: Path, root: str, videos: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
  with h5py.File(path, "w") as f:
    group = f.create_group(root)
    data = group.create_group("data")
    for video, (features, intervals) in videos.items():
      entry = data.create_group(video)
      entry.create_dataset("features", data=features)
      entry.create_dataset("intervals", data=intervals)
    metadata = group.create_group("metadata")
    for key, value in {"root name": root, "dataset name": "CMU-MOSI"}.items():
      metadata.create_dataset(
        key, (1,), dtype=h5py.special_dtype(vlen=str), data=[json.dumps(value)]
      )


def write(
  root: Path, *, videos_per_fold: int = 3, segments: int = 6, old_names: bool = False, seed: int = 0
) -> dict[str, list[float]]:
  """Writes the five ``.csd`` files under ``root``.

  Args:
    root: the manual folder.
    videos_per_fold: videos taken from each standard fold.
    segments: opinion segments per video (3 words and a silence each).
    old_names: use the older SDK file names.
    seed: the random seed.

  Returns:
    ``{video: [segment scores]}``.
  """
  rng = np.random.default_rng(seed)
  root = Path(root)
  root.mkdir(parents=True, exist_ok=True)
  videos = [
    v for name in ("train", "val", "test") for v in mosi_folds.FOLDS[name][:videos_per_fold]
  ]
  data = {role: {} for role in FILES}
  scores = {}
  for video in videos:
    score = np.round(rng.uniform(-3, 3, segments), 1)
    scores[video] = score.tolist()
    words, times = [], []
    for s in range(segments):  # Segment s spans [2s, 2s + 2) seconds: 3 words, then `sp`.
      for w in range(4):
        words.append(b"sp" if w == 3 else f"w{w}".encode())
        times.append([2 * s + 0.5 * w, 2 * s + 0.5 * w + 0.5])
    times = np.array(times)
    label_of_word = np.repeat(score, 4)
    vectors = rng.normal(0, 1, (len(words), 300)) + label_of_word[:, None] * 0.5
    vectors[3::4] = 0.0  # Silences.
    data["text"][video] = (vectors.astype(np.float32), times)
    data["words"][video] = (np.array(words, dtype="S")[:, None], times)
    steps = np.arange(20 * segments)  # 10 Hz acoustic and visual frames.
    frames = np.stack([steps / 10, (steps + 1) / 10], axis=1)
    covarep = rng.normal(0, 1, (len(steps), 74))
    covarep[0, 0] = -np.inf  # COVAREP has -inf values; readers set them to 0.
    data["audio"][video] = (covarep.astype(np.float32), frames)
    data["visual"][video] = (rng.normal(0, 1, (len(steps), 47)).astype(np.float32), frames)
    bounds = np.array([[2.0 * s, 2.0 * s + 2.0] for s in range(segments)])
    data["labels"][video] = (score[:, None].astype(np.float32), bounds)
  for role, (name, old_name, group, _) in FILES.items():
    _write_csd(root / f"{old_name if old_names else name}.csd", group, data[role])
  return scores
