"""Per-frame scoring (Aff-Wild2's convention) against a NumPy reference written here."""

import numpy as np
import pytest

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.methods import evaluation

TASK = schema_lib.Task("regression", ("valence", "arousal"))


def _ccc(x, y):
  """Concordance correlation, from its definition with population moments."""
  sx, sy, r = x.std(), y.std(), np.corrcoef(x, y)[0, 1]
  return 2 * r * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)


def _clips(seed=0):
  """Clips of 4 frames of two sequences, overlapping, some frames masked (``-5``)."""
  rng = np.random.default_rng(seed)
  # (sequence, first frame): sequence 3 has frames 1-6 in clips 1-4 and 3-6, sequence 7
  # frames 1-8 in clips 1-4, 3-6 and 5-8 (frame numbers repeat across sequences).
  clips = [(3, 1), (3, 3), (7, 1), (7, 3), (7, 5)]
  truth = {s: rng.uniform(-1, 1, (9, 2)) for s in (3, 7)}  # [frame number, 2]
  truth[3][1] = truth[7][6] = truth[7][7] = -5  # Not annotated.
  numbers = np.array([np.arange(first, first + 4) for _, first in clips])
  sequences = np.array([s for s, _ in clips])
  targets = np.stack([truth[s][n] for s, n in zip(sequences, numbers, strict=True)])
  frames = {"frame_targets": targets, "frame_mask": targets[..., 0] != -5, "frame_numbers": numbers}
  return rng.normal(0, 0.5, (len(clips), 2)), frames, sequences, truth


def _reference(outputs, frames, sequences):
  """Loops: every annotated (sequence, frame) once, its prediction the mean of its clips'."""
  given = {}
  for clip, sequence in enumerate(sequences):
    for position, number in enumerate(frames["frame_numbers"][clip]):
      if frames["frame_mask"][clip, position]:
        entry = given.setdefault((sequence, number), [frames["frame_targets"][clip, position], []])
        entry[1].append(outputs[clip])
  truth = np.array([t for t, _ in given.values()])
  predictions = np.array([np.mean(p, axis=0) for _, p in given.values()])
  return truth, predictions


def test_frame_scores_pool_every_annotated_frame_once():
  outputs, frames, sequences, truth = _clips()
  got = evaluation.frame_scores(outputs, frames, sequences, TASK)
  targets, predictions = _reference(outputs, frames, sequences)
  assert len(targets) == 6 + 8 - 3  # Frames 1-6 and 1-8, less the three masked.
  for i, name in enumerate(TASK.names):
    assert got[f"ccc_{name}"] == pytest.approx(_ccc(predictions[:, i], targets[:, i]), abs=1e-12)
  assert (
    got["score"]
    == got["ccc_mean"]
    == pytest.approx(np.mean([got["ccc_valence"], got["ccc_arousal"]]))
  )
  # Not the clip scores: overlapping frames are counted once, masked ones never.
  assert got["ccc_valence"] != pytest.approx(
    evaluation.scores(outputs, frames["frame_targets"].mean(1), TASK)["ccc_valence"]
  )


def test_a_perfect_prediction_of_constant_clips_scores_one():
  # Each clip predicts its frames exactly when every frame of a sequence has one value.
  outputs, frames, sequences, _ = _clips(seed=1)
  values = {3: np.array([0.5, -0.2]), 7: np.array([-0.4, 0.3])}
  frames["frame_targets"] = np.stack([np.tile(values[s], (4, 1)) for s in sequences])
  outputs = np.stack([values[s] for s in sequences])
  got = evaluation.frame_scores(outputs, frames, sequences, TASK)
  assert got["ccc_valence"] == pytest.approx(1.0) and got["ccc_arousal"] == pytest.approx(1.0)
