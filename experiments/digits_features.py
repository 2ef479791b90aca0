"""A real-data features file from a dataset shipped inside scikit-learn: handwritten digits.

The 1,797 8x8 digit images of ``sklearn.datasets.load_digits`` (UCI's optical recognition
of handwritten digits, bundled with scikit-learn: nothing is downloaded) become a features
file (README, "Your own data") with two modalities:

* ``image``, privileged: the 64 pixels, scaled to ``[0, 1]``;
* ``view``, at test time: a degraded sensor, the image averaged over 2x2 blocks (16 values)
  plus Gaussian noise of standard deviation ``--noise``, drawn once per example by
  ``--seed`` (a fixed property of the recording, not an augmentation).

At the default noise a logistic regression on ``view`` reaches about 0.62 on held-out
digits, one on ``image`` about 0.96. With no subject ids the folds are drawn over examples.
Needs scikit-learn (``pip install scikit-learn``), for this script only::

  python -m experiments.digits_features --out /tmp/digits.npz
  python -m experiments.train --config experiments/configs/features.py \\
      --config.features_path=/tmp/digits.npz --config.visual=view \\
      --config.privileged="('image',)" --workdir results/digits
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import app, flags

_OUT = flags.DEFINE_string("out", None, "The .npz file to write.", required=True)
_NOISE = flags.DEFINE_float("noise", 0.2, "Standard deviation of the view's noise.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the view's noise.")


def digits_features(noise: float, seed: int) -> dict[str, np.ndarray]:
  """The features file's arrays: ``x_image [N, 64]``, ``x_view [N, 16]`` and ``y [N]``."""
  try:
    from sklearn import datasets  # noqa: PLC0415 - this script's one optional dependency
  except ImportError:
    raise SystemExit(
      "experiments.digits_features needs scikit-learn: pip install scikit-learn"
    ) from None
  digits = datasets.load_digits()
  image = (digits.data / 16.0).astype(np.float32)
  blocks = image.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(len(image), 16)
  view = blocks + np.random.default_rng(seed).normal(0.0, noise, blocks.shape)
  return {"x_image": image, "x_view": view.astype(np.float32), "y": digits.target.astype(np.int64)}


def main(argv: Sequence[str]) -> None:
  del argv
  arrays = digits_features(_NOISE.value, _SEED.value)
  np.savez(_OUT.value, **arrays)
  print(f"Wrote {_OUT.value}: {len(arrays['y'])} examples.")


if __name__ == "__main__":
  app.run(main)
