"""Peak memory and throughput of training on a features file, streamed or in memory.

For each size ``N`` a features file of ``N`` sequences ``[length, dim]`` (plus a vector
modality, labels and subjects) is written uncompressed, converted to ``array_record``, and
then, in a fresh process per (size, path), one epoch of stage 0 of the sequence modality is
trained while the process's peak resident memory is recorded. A streamed dataset reads each
batch from disk, so its peak memory should stay flat as ``N`` grows; the in-memory path holds
every example.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mtpkd_jax.bench import processes


def write_file(path: Path, num: int, length: int, dim: int, seed: int = 0) -> None:
  """An uncompressed features file, written in chunks (its arrays never all in memory)."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, num)
  scratch = path.with_suffix(".seq.npy")
  seq = np.lib.format.open_memmap(scratch, "w+", np.float32, (num, length, dim))
  for start in range(0, num, 1000):
    stop = min(start + 1000, num)
    chunk = rng.normal(size=(stop - start, length, dim)).astype(np.float32)
    chunk[..., 0] += y[start:stop, None] - 0.5
    seq[start:stop] = chunk
  seq.flush()
  arrays = {
    "x_seq": seq,
    "x_vec": rng.normal(size=(num, 16)).astype(np.float32),
    "y": y,
    "subject": np.arange(num) % 50,
  }
  np.savez(path, **arrays)
  del seq
  scratch.unlink()


def _config(config, path: Path, data_dir: Path, in_memory: bool, batch_size: int):
  config = config.copy_and_resolve_references()
  config.features_path = str(path)
  config.dataset_options.path = str(path)
  config.data_dir = str(data_dir)
  config.in_memory = in_memory
  config.visual, config.privileged = "seq", ()
  config.methods = ("visual_only",)
  config.stages.unimodal.epochs = 1
  config.stages.unimodal.min_steps = 0  # One pass, whatever the size.
  config.stages.unimodal.batch_size = batch_size
  config.num_folds = 2
  config.eval_batch_size = 256
  return config


def _child(config, path: str, data_dir: str, workdir: str, in_memory: bool, batch_size: int, queue):
  # Imported here: the measured process starts bare (spawn), and so does its memory.
  from mtpkd_jax.comparison import runner  # noqa: PLC0415
  from mtpkd_jax.data import pipeline  # noqa: PLC0415
  from mtpkd_jax.methods import context, graph  # noqa: PLC0415
  from mtpkd_jax.train import parallel  # noqa: PLC0415

  config = _config(config, Path(path), Path(data_dir), in_memory, batch_size)
  start = time.perf_counter()
  dataset = runner.open_dataset(config)
  opened = time.perf_counter() - start
  ctx = runner.make_context(config, dataset, 0, Path(workdir), parallel.make_mesh(1))
  train = ctx.split["train"]
  start = time.perf_counter()
  for _ in pipeline.batches(
    dataset.table, train, batch_size=batch_size, seed=0, drop_remainder=True
  ):
    pass
  read = time.perf_counter() - start
  start = time.perf_counter()
  graph.train_stage(ctx, context.Memo(), "unimodal", "seq")
  trained = time.perf_counter() - start
  queue.put(
    {
      "open_s": opened,
      "read_examples_per_s": len(train) / read,
      "train_s": trained,
      "train_examples_per_s": len(train) / trained,
      "peak_rss_mib": processes.peak_mib(),
    }
  )


def _build(path: str, data_dir: str, queue):
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  start = time.perf_counter()
  pipeline.builder("features_npz", data_dir, {"path": path}).download_and_prepare()
  queue.put({"build_s": time.perf_counter() - start, "build_peak_rss_mib": processes.peak_mib()})


def run(
  config, sizes: list[int], length: int, dim: int, batch_size: int, out_dir: Path
) -> list[dict]:
  """Measures every (size, path); writes ``streaming.json`` and returns the rows.

  Args:
    config: a features experiment config (``experiments/configs/features.py``); its file,
      modalities, methods and stage-0 schedule are set here.
    sizes: numbers of examples.
    length: the sequences' length.
    dim: the sequences' feature size.
    batch_size: the training batch.
    out_dir: where the files, the datasets and ``streaming.json`` go.
  """
  out_dir.mkdir(parents=True, exist_ok=True)
  rows = []
  for num in sizes:
    path = out_dir / f"features_{num}.npz"
    write_file(path, num, length, dim)
    data_dir = out_dir / "tfds"
    build = processes.in_fresh_process(_build, str(path), str(data_dir))
    for in_memory in (False, True):
      workdir = out_dir / f"work_{num}_{'memory' if in_memory else 'stream'}"
      row = processes.in_fresh_process(
        _child, config, str(path), str(data_dir), str(workdir), in_memory, batch_size
      )
      rows.append(
        {
          "examples": num,
          "file_mib": path.stat().st_size / 2**20,
          "path": "in memory" if in_memory else "streamed",
          **build,
          **row,
        }
      )
    path.unlink()
  (out_dir / "streaming.json").write_text(json.dumps(rows, indent=1))
  return rows


def markdown(rows: list[dict]) -> str:
  """The rows as a table."""
  lines = [
    "| examples | file (MiB) | path | build peak RSS (MiB) | train peak RSS (MiB) "
    "| read (examples/s) | stage 0, 1 epoch (examples/s) |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['examples']} | {r['file_mib']:.0f} | {r['path']} | {r['build_peak_rss_mib']:.0f} "
      f"| {r['peak_rss_mib']:.0f} | {r['read_examples_per_s']:.0f} "
      f"| {r['train_examples_per_s']:.0f} |"
    )
  return "\n".join(lines)
