"""How much a privileged teacher could teach on ``synthetic_affect/pain_binary``: the latents.

  python -m experiments.diagnostics.synthetic_headroom [--samples 200000]

Draws subjects and clips from the generator's own latent model
(:func:`mtpkd_jax.data.synthetic_affect._subject_traits` and ``_affect``) and prints:

* how the per-clip latent shared by the modalities (the felt intensity, which drives valence and
  arousal and through them both the face and the physiology) splits into the label, the
  subject's responsiveness and per-clip noise;
* the accuracy of the best classifier (logistic regression on quadratic features, fitted on half
  the draws, scored on the other half) from (1) the felt intensity itself (all that the
  modalities share: an upper bound of any teacher), and (2) an *oracle face*: the four facial
  actions at the expression's peak as ``_video`` drives them (gain times drive, plus the clip's
  unrelated facial movement, sd 0.25 per action, and frame noise averaged over 3 peak frames),
  without identity, pose, lighting, blinks or pixels: an upper bound of the visual modality.
"""

import numpy as np
from absl import app, flags

from mtpkd_jax.data import synthetic_affect as sa

_SAMPLES = flags.DEFINE_integer("samples", 200_000, "Clips to draw.")
_PER_SUBJECT = 40


def _draw(n: int, seed: int = 0):
  """``(label, felt, responsiveness, oracle face actions [n, 4])`` of ``n`` clips."""
  config = next(c for c in sa.CONFIGS if c.name == "pain_binary")
  rng = np.random.default_rng(seed)
  labels, felt, resp, actions = [], [], [], []
  for _ in range(0, n, _PER_SUBJECT):
    traits = sa._subject_traits(rng, config)  # noqa: SLF001  (the generator's own draws)
    for label in rng.permutation(np.arange(_PER_SUBJECT) % 2):
      label, valence, arousal = sa._affect(rng, config, traits, int(label))  # noqa: SLF001
      negative, aroused, positive = max(0.0, -valence), (arousal + 1) / 2, max(0.0, valence)
      drives = (negative, 0.6 * negative + 0.4 * aroused, 0.5 * negative + 0.5 * aroused, positive)
      noise = rng.normal(0.0, 0.25, 4) + rng.normal(0.0, 0.08 / np.sqrt(3), 4)
      actions.append(config.video_strength * np.array(drives) + noise)
      labels.append(label)
      felt.append(max(0.0, (arousal + 0.8) / 1.6))
      resp.append(traits["responsiveness"])
  return np.array(labels[:n]), np.array(felt[:n]), np.array(resp[:n]), np.array(actions[:n])


def _quadratic(x):
  x = (x - x.mean(0)) / x.std(0)
  pairs = [x[:, i] * x[:, j] for i in range(x.shape[1]) for j in range(i, x.shape[1])]
  return np.c_[np.ones(len(x)), x, np.stack(pairs, 1)]


def best_accuracy(x, y, steps=30):
  """Logistic regression on quadratic features by Newton's method; held-out accuracy."""
  f = _quadratic(x)
  half = len(y) // 2
  w = np.zeros(f.shape[1])
  for _ in range(steps):
    p = 1 / (1 + np.exp(-f[:half] @ w))
    hessian = (f[:half] * (p * (1 - p))[:, None]).T @ f[:half] + 1e-6 * np.eye(len(w))
    w -= np.linalg.solve(hessian, f[:half].T @ (p - y[:half]))
  return float(np.mean(((f[half:] @ w) > 0) == y[half:]))


def main(argv):
  del argv
  y, felt, resp, actions = _draw(_SAMPLES.value)
  for c in (0, 1):
    f = felt[y == c]
    print(f"class {c}: felt mean {f.mean():.3f} sd {f.std():.3f}")
  pa4 = y == 1
  explained = np.corrcoef(resp[pa4], felt[pa4])[0, 1] ** 2
  print(f"within PA4, felt variance explained by the subject's responsiveness: {explained:.2f}")
  for what, x in (
    ("the felt intensity (what all modalities share)", felt[:, None]),
    ("the oracle face (4 actions at the peak)", actions),
    ("the oracle face plus the subject's responsiveness", np.c_[actions, resp]),
  ):
    print(f"best accuracy from {what}: {best_accuracy(x, y):.3f}")


if __name__ == "__main__":
  app.run(main)
