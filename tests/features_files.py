"""Small generated features files (the features `.npz` format) for tests."""

from pathlib import Path

import numpy as np


def write_features(
  path: Path,
  *,
  task: str = "classification",
  num_targets: int = 1,
  num_subjects: int = 6,
  per_subject: int = 8,
  length: int = 6,
  seed: int = 0,
  **extra: np.ndarray,
) -> dict[str, np.ndarray]:
  """Writes a features file and returns its arrays.

  A latent per example drives `y`; `x_face` (vectors `[N, 5]`) carries it weakly and
  `x_eda` (masked sequences `[N, length, 3]`, valid prefixes of 2..length steps) strongly.
  `extra` arrays are added (or replace generated ones; `None` removes a key).
  """
  rng = np.random.default_rng(seed)
  n = num_subjects * per_subject
  latent = rng.normal(size=(n, max(num_targets, 1)))
  lengths = rng.integers(2, length + 1, size=n)
  mask = np.arange(length)[None] < lengths[:, None]
  eda = latent[:, :1, None] * np.ones((1, length, 3)) + 0.3 * rng.normal(size=(n, length, 3))
  arrays = {
    "x_face": (0.5 * latent[:, :1] + rng.normal(size=(n, 5))).astype(np.float32),
    "x_eda": np.where(mask[..., None], eda, 0.0).astype(np.float32),
    "mask_eda": mask,
    "subject": np.repeat(np.arange(num_subjects), per_subject),
  }
  if task == "classification":
    arrays["y"] = (latent[:, 0] > 0).astype(np.int64)
    arrays["class_names"] = np.array(["low", "high"])
  else:
    y = latent[:, :num_targets].astype(np.float32)
    arrays["y"] = y[:, 0] if num_targets == 1 else y
    arrays["target_names"] = np.array([f"dim{k}" for k in range(num_targets)])
  arrays |= extra
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez(path, **arrays)
  return arrays
