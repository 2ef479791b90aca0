"""One process of a toy multi-process run; started by multihost_test (several at once).

Usage: python multihost_worker.py WORKDIR RESULT_JSON [--slow]
                                  [--coordinator=host:port --num_processes=N --process_id=I]

Trains the toy stage of `fit_toy_stage` from per-process batch rows (`pipeline.batch_dataset`
shards), selects on a validation split of 13 examples (which divides by no device count)
scored with `evaluation.predict`, and writes, from process 0, the start step, the best meta,
the final parameters and what `predict` returns for the validation examples' own indices.
`--slow` sleeps in `batch_for_step`, so that the test can kill the run mid-stage.
"""

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import train_toys  # noqa: E402

from mtpkd_jax.data import pipeline  # noqa: E402
from mtpkd_jax.data import table as table_lib  # noqa: E402
from mtpkd_jax.methods import evaluation  # noqa: E402
from mtpkd_jax.train import distributed, loop, parallel  # noqa: E402

NUM_STEPS = 16
BATCH_SIZE = 8
NUM_VAL = 13


def _tables() -> tuple[table_lib.ArrayTable, table_lib.ArrayTable]:
  train, val = train_toys.batch(0, size=64), train_toys.batch(1, size=NUM_VAL)
  val["index"] = np.arange(NUM_VAL)
  return table_lib.ArrayTable(train), table_lib.ArrayTable(val)


def main(workdir: str, result_path: str, flags: dict[str, str]) -> None:
  distributed.initialize(
    flags.get("coordinator"),
    int(flags["num_processes"]) if "num_processes" in flags else None,
    int(flags["process_id"]) if "process_id" in flags else None,
    heartbeat_timeout_s=5,
    shutdown_timeout_s=10,
  )
  model = train_toys.MLP(batch_norm=True)
  train, val = _tables()
  dataset = pipeline.batch_dataset(
    train,
    np.arange(len(train)),
    batch_size=BATCH_SIZE,
    seed=0,
    drop_remainder=True,
    num_epochs=None,
    num_shards=jax.process_count(),
    shard_index=jax.process_index(),
  )

  def batch_for_step(i):
    if "slow" in flags:
      time.sleep(0.3)
    return dataset[i]

  predict_fn = jax.jit(lambda v, b: model.apply(v, b["x"], train=False))

  def eval_fn(params, batch_stats):
    variables = {"params": params, "batch_stats": batch_stats}
    preds = evaluation.predict(predict_fn, variables, val, batch_size=4)
    return {"mse": float(np.mean((preds - val.column("y")) ** 2))}

  result = loop.fit(
    train_toys.make_state(model),
    # No input noise: its draws depend on the per-device batch shape, so on the layout.
    train_toys.train_step(model),
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
    eval_fn=eval_fn,
    eval_every=4,
    best_metric="mse",
    best_mode="min",
  )
  # Which examples evaluation saw, and how often: their own indices, back from the devices.
  seen = evaluation.predict(jax.jit(lambda v, b: b["index"] + jnp.zeros((), v.dtype)), 0, val, 4)
  leaves = jax.tree.leaves(jax.device_get((result.state.params, result.state.batch_stats)))
  if distributed.is_main():
    Path(result_path).write_text(
      json.dumps(
        {
          "processes": jax.process_count(),
          "devices": jax.device_count(),
          "start_step": result.start_step,
          "best": result.best,
          "final": np.concatenate([np.ravel(x) for x in leaves]).tolist(),
          "seen": np.asarray(seen).tolist(),
        }
      )
    )


if __name__ == "__main__":
  options = dict((arg[2:].split("=", 1) + [""])[:2] for arg in sys.argv[3:] if arg.startswith("--"))
  main(sys.argv[1], sys.argv[2], options)
