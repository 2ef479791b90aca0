"""Predictions of a finished run's test-time path on new data.

A finished workdir holds the config and the dataset's schema (``config.json``,
``schema.json``) and, per run, the saved stages. :func:`predict_file` rebuilds the visual-only
test-time path of one method from those alone (no training data is needed) and applies it to
the visual modality of a features file: only ``x_<visual>`` (and ``mask_<visual>``) are read;
privileged arrays in the file are ignored and never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import cmkt, context, registry, students, unimodal
from mtpkd_jax.train import parallel


def _run_dir(workdir: Path, run: int) -> tuple[Path, int]:
  found = sorted(workdir.glob(f"run{run}_fold*_seed*"))
  if not found:
    runs = sorted(p.name for p in workdir.glob("run*_fold*_seed*"))
    raise FileNotFoundError(f"{workdir} has no run {run}; it has {runs or 'no runs'}.")
  return found[0], int(found[0].name.rsplit("_seed", 1)[1])


def load_context(workdir: str | Path, run: int = 0) -> context.Context:
  """The context of run ``run`` of a finished workdir, without its dataset.

  Raises:
    FileNotFoundError: if the workdir has no saved config or schema (not a finished run), or
      no run ``run``.
  """
  workdir = Path(workdir)
  for name in ("config.json", "schema.json"):
    if not (workdir / name).is_file():
      raise FileNotFoundError(
        f"{workdir / name} is missing: --workdir must be the folder of a finished "
        "`experiments.train` run."
      )
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  config.privileged = tuple(config.privileged)
  schema = schema_lib.Schema.from_json(json.loads((workdir / "schema.json").read_text()))
  run_dir, seed = _run_dir(workdir, run)
  return context.Context(
    config=config,
    schema=schema,
    dataset=None,
    split={},
    workdir=run_dir,
    seed=seed,
    mesh=parallel.make_mesh(1),
  )


def read_visual(path: str | Path, schema: schema_lib.Schema, visual: str) -> table_lib.Table:
  """The visual modality of a features file, checked against the schema it was trained on.

  Raises:
    ValueError: naming the file and key, on a missing key, a shape other than the trained
      one, a mask of the wrong shape, or NaN or Inf.
  """
  modality = schema.modality(visual)
  key, mask = f"x_{visual}", schema_lib.mask_key(visual)
  with np.load(path, allow_pickle=False) as npz:
    if key not in npz.files:
      raise ValueError(f"{path}: no key {key!r} (the test-time modality); found {npz.files}.")
    x = np.asarray(npz[key], dtype=np.float32)
    if x.shape[1:] != tuple(modality.shape):
      raise ValueError(
        f"{path}: key {key!r} must be [N, {', '.join(map(str, modality.shape))}] as in "
        f"training, got {list(x.shape)}."
      )
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{path}: key {key!r} holds NaN or Inf.")
    columns = {visual: x}
    if modality.masked:
      m = np.asarray(npz[mask]) if mask in npz.files else np.ones(x.shape[:2], bool)
      if m.shape != x.shape[:2] or m.dtype != np.bool_:
        raise ValueError(f"{path}: key {mask!r} must be bool {list(x.shape[:2])}.")
      columns[mask] = m
  return table_lib.ArrayTable(columns)


def predictor(ctx: context.Context, method: str):
  """``fn(table) -> outputs [N, C]``: the visual-only test-time path of ``method``.

  Raises:
    ValueError: for a method that needs privileged inputs at test time (the joint teacher)
      or one this run did not train.
  """
  if method not in ctx.config.methods:
    raise ValueError(f"This run trained {list(ctx.config.methods)}, not {method!r}.")
  kind = registry.get_method(method, ctx.config.visual)
  if kind.kind == "teacher":
    raise ValueError(
      f"{method!r} needs the privileged modalities at test time; predict serves the "
      "visual-only methods (students, CMKT methods and visual_only)."
    )
  if kind.kind == "unimodal":
    if kind.modality != ctx.config.visual:
      raise ValueError(f"{method!r} reads {kind.modality!r}, not the visual modality.")
    return unimodal.unimodal_predictor(ctx, kind.modality)
  if kind.kind == "cmkt":
    weak = cmkt.cmkt_predictor(ctx, method)
    return lambda table: weak(table)[0]
  student = students.student_predictor(ctx, method)
  return lambda table: student(table)[0]


def predict_file(
  workdir: str | Path, method: str, input_path: str | Path, output_path: str | Path, run: int = 0
) -> dict[str, np.ndarray]:
  """Writes a method's predictions on a features file to ``output_path`` (an ``.npz``).

  Returns:
    What was written: ``outputs`` ``[N, C]`` (logits or targets); for classification
    ``predictions`` (class indices), ``probabilities`` (softmax) and ``class_names``; for
    regression ``predictions`` (``[N, K]``) and ``target_names``.
  """
  ctx = load_context(workdir, run)
  table = read_visual(input_path, ctx.schema, ctx.config.visual)
  outputs = np.asarray(predictor(ctx, method)(table), dtype=np.float32)
  task = ctx.schema.task
  result = {"outputs": outputs}
  if task.kind == "classification":
    result |= {
      "predictions": outputs.argmax(-1),
      "probabilities": np.asarray(jax.nn.softmax(outputs, axis=-1)),
      "class_names": np.array(task.names),
    }
  else:
    result |= {"predictions": outputs, "target_names": np.array(task.names)}
  Path(output_path).parent.mkdir(parents=True, exist_ok=True)
  np.savez(output_path, **result)
  return result
