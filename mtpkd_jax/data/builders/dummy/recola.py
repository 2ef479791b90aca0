"""Dummy RECOLA (AVEC 2016) files: the gold-standard and feature ARFFs in the release layout.

Headers follow the release (``Instance_name string``, ``frameTime numeric``, then the
values; 88 audio, 168 appearance, 632 geometric, 19 ECG, 10 HR/HRV features); feature names
are placeholders (the release's openSMILE names are not needed: columns are read by type).
Features carry the gold standard weakly, so a model can learn from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIMS = {
  "features_audio": 88,
  "features_video_appearance": 168,
  "features_video_geometric": 632,
  "features_ECG": 19,
  "features_HRHRV": 10,
}


def _write_arff(path: Path, relation: str, names, recording: str, times, values) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  header = [f"@relation {relation}", "", "@attribute Instance_name string"]
  header += ["@attribute frameTime numeric"] + [f"@attribute {n} numeric" for n in names]
  rows = [
    ",".join([recording, f"{t:.2f}", *(f"{v:.6f}" for v in row)])
    for t, row in zip(times, values, strict=True)
  ]
  path.write_text("\n".join([*header, "", "", "@data", "", *rows, ""]))


def write(
  root: Path,
  *,
  recordings: int = 3,
  frames: int = 60,
  layout: str = "avec2016",
  nest: str = "",
  seed: int = 0,
) -> list[str]:
  """Writes ``train_1..n``, ``dev_1..n`` (and ``test_1``, without gold standard).

  Args:
    root: the manual folder.
    recordings: recordings per partition.
    frames: rows per file (40 ms apart; the release has 7501).
    layout: ``avec2016`` (per-dimension feature subfolders) or ``avec2015`` (none).
    nest: an extra folder level to put everything under (e.g. ``"AVEC2016"``).
    seed: the random seed.

  Returns:
    The recording ids that have a gold standard.
  """
  rng = np.random.default_rng(seed)
  base = Path(root) / nest
  times = np.arange(frames) * 0.04
  ids = [f"{p}_{k}" for p in ("train", "dev") for k in range(1, recordings + 1)]
  for recording in [*ids, "test_1"]:
    gold = {
      d: np.tanh(np.cumsum(rng.normal(0, 0.2, frames)) / 4).astype(np.float32)
      for d in ("arousal", "valence")
    }
    for dimension, values in gold.items():
      if recording in ids:
        path = base / "ratings_gold_standard" / dimension / f"{recording}.arff"
        _write_arff(path, "GOLDSTANDARD", ["GoldStandard"], recording, times, values[:, None])
      for folder, dim in DIMS.items():
        if layout == "avec2015" and dimension == "valence":
          continue
        sub = "" if layout == "avec2015" else dimension
        features = rng.normal(0, 1, (frames, dim)) + values[:, None] * rng.normal(0, 1, dim)
        names = [f"{folder.removeprefix('features_').lower()}_{i}" for i in range(dim)]
        path = base / folder / sub / f"{recording}.arff"
        _write_arff(path, "openSMILE_features", names, recording, times, features)
  return ids
