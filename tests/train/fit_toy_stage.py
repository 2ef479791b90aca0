"""Trains a toy stage with `fit`; run as a subprocess by loop_test's kill/resume test.

Usage: python fit_toy_stage.py WORKDIR RESULT_JSON [--slow]

`--slow` sleeps in `batch_for_step` so that the test can kill the run mid-stage. The result
JSON holds the step the run started from, the best-copy meta and the final parameters.
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import train_toys  # noqa: E402

from mtpkd_jax.train import loop, parallel  # noqa: E402

NUM_STEPS = 16


def main(workdir: str, result_path: str, slow: bool) -> None:
  model = train_toys.MLP(batch_norm=True)

  def batch_for_step(i):
    if slow:
      time.sleep(0.3)
    return train_toys.batch(i)

  result = loop.fit(
    train_toys.make_state(model),
    # Input noise makes the result depend on the per-step keys too.
    train_toys.train_step(model, noise=0.1),
    loop.StageRun(
      "toy",
      workdir,
      parallel.make_mesh(),
      jax.random.key(42),
      checkpoint_every=4,
      keep_checkpoints=2,
    ),
    batch_for_step=batch_for_step,
    num_steps=NUM_STEPS,
    eval_fn=train_toys.validation_mse(model),
    eval_every=4,
    best_metric="mse",
    best_mode="min",
  )
  leaves = jax.tree.leaves(jax.device_get((result.state.params, result.state.batch_stats)))
  Path(result_path).write_text(
    json.dumps(
      {
        "start_step": result.start_step,
        "best": result.best,
        "final": np.concatenate([np.ravel(x) for x in leaves]).tolist(),
      }
    )
  )


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], slow="--slow" in sys.argv[3:])
