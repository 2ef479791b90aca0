"""How many BioVid clips per second the training input delivers, alone and feeding stage 0.

Dummy BioVid Part A files (:mod:`mtpkd_jax.data.builders.dummy.biovid`) of ``videos``
samples are built with the default config: examples of a ``[10, 112, 112, 3]`` uint8 clip
and ``[2816, 3]`` float32 signals, stored in ``array_record`` files on disk. The dataset is
opened streamed (read from the files batch by batch, as a dataset over
``pipeline.IN_MEMORY_BYTES`` is, e.g. Part A's 8,700 clips) and read the way training reads
it (:func:`mtpkd_jax.data.pipeline.batch_dataset` through
:class:`~mtpkd_jax.data.pipeline.ReadAhead`), in batches of ``batch_size``, once per
read-ahead depth:

* ``input``: the batches alone, ``steps`` of them (the files are in the page cache after
  the first epoch, as a dataset that fits in memory is);
* ``stage 0``: the batches feeding the stage-0 train step of the video encoder of the
  experiment config the caller passes (``experiments/bench_data.py``: BioVid's
  ``part_a_binary``, its default encoder) on the video and label columns, as
  ``mtpkd_jax.train.loop.fit`` runs it (the next batch is read while the step runs); the
  step alone, on one batch, is timed too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH_SIZE = 32


def build(videos: int, data_dir: Path) -> None:
  """Builds ``videos`` dummy BioVid samples under ``data_dir``, unless built already.

  The videos are copies of a moving texture at 224 x 168 (:mod:`~.build_speed`): their clips
  compress in the records about as little as grainy faces would.
  """
  from mtpkd_jax.bench import build_speed  # noqa: PLC0415
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  manual_dir = data_dir / f"manual_{videos}"
  if not (manual_dir / "complete").is_file():
    shutil.rmtree(manual_dir, ignore_errors=True)
    build_speed.write_files(manual_dir, videos, 224, 168)
    (manual_dir / "complete").write_text("")
  pipeline.builder(
    "biovid/part_a_binary", str(data_dir / f"tfds_{videos}"), None, str(manual_dir)
  ).download_and_prepare()


def _dataset(videos: int, data_dir: Path):
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  return pipeline.open_dataset(
    "biovid/part_a_binary", str(data_dir / f"tfds_{videos}"), in_memory=False
  )


def _batches(dataset, batch_size: int, keys=None):
  """The dataset's shuffled batches by step, every epoch (``keys``: the features read)."""
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  return pipeline.batch_dataset(
    dataset.table,
    np.arange(len(dataset)),
    batch_size=batch_size,
    seed=0,
    drop_remainder=True,
    num_epochs=None,
    keys=keys,
  )


def read_rate(dataset, steps: int, depth: int, batch_size: int = BATCH_SIZE) -> dict:
  """``steps`` batches read through ``ReadAhead(depth)``.

  Returns:
    A dict: ``depth``; ``input``, examples per second; ``cpu_ms``, this process's CPU time
    (every thread) per example, in ms: what contention from other processes changes least.
  """
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  batch_for_step = pipeline.ReadAhead(_batches(dataset, batch_size), depth)
  batch_for_step(0)  # The first read opens the files.
  start, cpu = time.perf_counter(), time.process_time()
  for step in range(1, steps + 1):
    batch_for_step(step)
  wall, cpu = time.perf_counter() - start, time.process_time() - cpu
  return {
    "depth": depth,
    "input": steps * batch_size / wall,
    "cpu_ms": cpu / steps / batch_size * 1e3,
  }


def train_rates(
  config, dataset, steps: int, depths: list[int], batch_size: int = BATCH_SIZE
) -> dict:
  """Stage 0 of ``config``'s video encoder fed by the input, per depth, and its step alone.

  Args:
    config: the experiment config whose stage 0 is trained (its ``video`` encoder, head and
      optimiser settings), e.g. ``experiments/configs/biovid.py``'s ``part_a_binary``.
    dataset: the dataset read (:func:`mtpkd_jax.data.pipeline.open_dataset`).
    steps: stage-0 steps per depth.
    depths: read-ahead depths.
    batch_size: the batch size.

  Returns:
    ``{"step_alone": examples/s, "compile_s": s, depth: examples/s, ...}``.
  """
  import jax  # noqa: PLC0415
  import optax  # noqa: PLC0415

  from mtpkd_jax.data import pipeline  # noqa: PLC0415
  from mtpkd_jax.methods import context, unimodal  # noqa: PLC0415
  from mtpkd_jax.train import parallel  # noqa: PLC0415
  from mtpkd_jax.train import state as state_lib  # noqa: PLC0415
  from mtpkd_jax.train import step as step_lib  # noqa: PLC0415

  mesh = parallel.make_mesh(1)
  with tempfile.TemporaryDirectory() as workdir:
    ctx = context.Context(
      config=config,
      schema=dataset.schema,
      dataset=None,
      split={},
      workdir=Path(workdir),
      seed=0,
      mesh=mesh,
    )
    model = unimodal.unimodal_model(ctx, "video")
    batches = _batches(dataset, batch_size, keys=("video", "y"))
    first = batches[0]
    variables = model.init(jax.random.PRNGKey(0), first["video"][:1])
    tx = optax.adam(1e-3)
    state = state_lib.create_train_state(model.apply, variables, tx)
    step = parallel.data_parallel(
      step_lib.make_train_step(unimodal.unimodal_loss(ctx, "video", model)), mesh
    )
    rng = parallel.replicate_on_mesh(jax.random.PRNGKey(1), mesh)
    state = parallel.replicate_on_mesh(state, mesh)
    start = time.perf_counter()
    state, metrics = step(state, parallel.shard_batch(first, mesh), rng, None)
    jax.block_until_ready(metrics)
    out = {"compile_s": time.perf_counter() - start}
    batch = parallel.shard_batch(first, mesh)
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, batch, rng, None)
      jax.block_until_ready(metrics)
    out["step_alone"] = steps * batch_size / (time.perf_counter() - start)
    for depth in depths:
      batch_for_step = pipeline.ReadAhead(batches, depth)
      batch = parallel.shard_batch(batch_for_step(0), mesh)
      start = time.perf_counter()
      for number in range(1, steps + 1):
        state, metrics = step(state, batch, rng, None)
        batch = parallel.shard_batch(batch_for_step(number), mesh)  # While the step runs.
        jax.block_until_ready(metrics)
      out[depth] = steps * batch_size / (time.perf_counter() - start)
  return out


def run(
  config, videos: int, steps: int, train_steps: int, depths: list[int], out_dir: Path
) -> dict:
  """Builds the dataset (once) and measures the input alone and feeding stage 0, per depth.

  Args:
    config: the experiment config whose stage 0 is trained (:func:`train_rates`).
    videos: the dataset's examples (at least a batch).
    steps: batches read per depth (the input alone); more than an epoch re-reads it.
    train_steps: stage-0 steps per depth (``0``: none).
    depths: read-ahead depths (``0``: no read-ahead, each batch read when asked for).
    out_dir: where the files, the dataset and ``input_speed.json`` go (kept between runs).

  Returns:
    A dict: ``videos``, ``batch_size``, ``example_mib``; ``rows``, one per depth, of
    ``depth``, ``input`` and ``stage_0`` (examples per second) and ``cpu_ms`` (CPU ms per
    example); ``step_alone`` (examples per second) and ``compile_s``.

  Raises:
    ValueError: on fewer ``videos`` than a batch, or a negative depth or step count.
  """
  if videos < BATCH_SIZE or steps < 1 or train_steps < 0 or min(depths, default=-1) < 0:
    raise ValueError(
      f"`videos` must be at least a batch ({BATCH_SIZE}), `steps` positive, `train_steps` "
      f"and the depths non-negative; got {videos}, {steps}, {train_steps}, {depths}."
    )
  out_dir.mkdir(parents=True, exist_ok=True)
  build(videos, out_dir)
  dataset = _dataset(videos, out_dir)
  rows = [read_rate(dataset, steps, d) for d in depths]
  result = {
    "videos": len(dataset),
    "batch_size": BATCH_SIZE,
    "example_mib": dataset.schema.example_bytes / 2**20,
    "rows": rows,
  }
  if train_steps:
    trained = train_rates(config, dataset, train_steps, depths)
    for row in rows:
      row["stage_0"] = trained[row["depth"]]
    result |= {"step_alone": trained["step_alone"], "compile_s": trained["compile_s"]}
  (out_dir / "input_speed.json").write_text(json.dumps(result, indent=1))
  return result


def markdown(result: dict) -> str:
  """The rows as a table."""
  lines = [
    f"BioVid clips ([10, 112, 112, 3] uint8 and [2816, 3] float32 signals, "
    f"{result['example_mib']:.2f} MiB an example), {result['videos']} on disk, streamed in "
    f"batches of {result['batch_size']}:",
    "",
    "| read-ahead (batches) | input alone (clips/s) | input CPU (ms / clip) "
    "| stage 0 fed by it (clips/s) |",
    "|---|---|---|---|",
  ]
  for r in result["rows"]:
    stage = f"{r['stage_0']:.0f}" if "stage_0" in r else "-"
    lines.append(f"| {r['depth']} | {r['input']:.0f} | {r['cpu_ms']:.2f} | {stage} |")
  if "step_alone" in result:
    lines += [
      "",
      f"The stage-0 step alone, on one batch: {result['step_alone']:.0f} clips/s "
      f"(compiled in {result['compile_s']:.0f} s).",
    ]
  return "\n".join(lines)
