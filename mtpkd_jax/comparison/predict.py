"""Predictions of a finished run's test-time path on new data.

A finished workdir holds the config and the dataset's schema (``config.json``,
``schema.json``) and, per run, the saved stages. :func:`predict_file` rebuilds the visual-only
test-time path of one method from those alone (no training data is needed) and applies it to
the visual modality of a features file: only ``x_<visual>`` (and ``mask_<visual>``) are read;
privileged arrays in the file are ignored and never loaded. The model is fed what training fed
it: the array in the schema's dtype (uint8 video, which the encoders scale to [0, 1]), through
:meth:`~mtpkd_jax.methods.context.Context.model_input`.

Run ``r`` is the folder the config gives it (:func:`mtpkd_jax.comparison.runner.fold_and_seed`),
never another run's: a workdir trained again with another config keeps its earlier run folders,
but its ``config.json`` is the latest run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np

from mtpkd_jax.comparison import runner, tuning
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import cmkt, context, registry, students, unimodal
from mtpkd_jax.train import parallel


def _run_dir(workdir: Path, config: ml_collections.ConfigDict, run: int) -> Path:
  """The folder of run ``run`` of ``config``, as the runner named it."""
  if not 0 <= run < config.num_runs:
    raise FileNotFoundError(
      f"{workdir / 'config.json'} gives runs 0 to {config.num_runs - 1}, not run {run}."
    )
  run_dir = workdir / runner.run_dir_name(config, run)
  if not run_dir.is_dir():
    runs = sorted(p.name for p in workdir.glob("run*_fold*_seed*"))
    raise FileNotFoundError(
      f"{run_dir} is missing: {workdir / 'config.json'} (seed {config.seed}, "
      f"{config.num_folds} folds) puts run {run} there, and the workdir has "
      f"{runs or 'no runs'}. Run folders of another fold or seed are from an earlier "
      "`experiments.train` run in this workdir with another config; predict does not serve them."
    )
  return run_dir


def load_context(workdir: str | Path, run: int = 0) -> context.Context:
  """The context of run ``run`` of a finished workdir, without its dataset.

  Raises:
    FileNotFoundError: if the workdir has no saved config or schema (not a finished run), or
      no folder of run ``run`` (``run{run}_fold{fold}_seed{seed}``, from ``config.json``).
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
  run_dir = _run_dir(workdir, config, run)
  return context.Context(
    config=config,
    schema=schema,
    dataset=None,
    split={},
    workdir=run_dir,
    seed=runner.fold_and_seed(config, run)[1],
    mesh=parallel.make_mesh(1),
  )


def read_visual(path: str | Path, schema: schema_lib.Schema, visual: str) -> table_lib.Table:
  """The visual modality of a features file, checked against the schema it was trained on.

  The array is cast to the schema's dtype, the one training read: the encoders scale uint8
  video to [0, 1] and take float video as it is.

  Raises:
    ValueError: naming the file and key, on a missing key, a dtype that does not cast to the
      trained one within its kind (float pixels for uint8 video) or values outside it, a
      shape other than the trained one, no example, a mask of the wrong shape, or NaN or Inf.
  """
  modality = schema.modality(visual)
  key, mask = f"x_{visual}", schema_lib.mask_key(visual)
  dtype = np.dtype(modality.dtype)
  with np.load(path, allow_pickle=False) as npz:
    if key not in npz.files:
      raise ValueError(f"{path}: no key {key!r} (the test-time modality); found {npz.files}.")
    stored = npz[key]
    if not np.can_cast(stored.dtype, dtype, casting="same_kind"):
      raise ValueError(f"{path}: key {key!r} must be {dtype} as in training, got {stored.dtype}.")
    x = stored.astype(dtype)
    if dtype.kind in "iu" and not np.array_equal(x, stored):
      raise ValueError(f"{path}: key {key!r} holds values outside {dtype}, the trained dtype.")
    if x.shape[1:] != tuple(modality.shape):
      raise ValueError(
        f"{path}: key {key!r} must be [N, {', '.join(map(str, modality.shape))}] as in "
        f"training, got {list(x.shape)}."
      )
    if not len(x):
      raise ValueError(f"{path}: key {key!r} holds no example (N = 0); give one or more.")
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{path}: key {key!r} holds NaN or Inf.")
    columns = {visual: x}
    if modality.masked:
      m = np.asarray(npz[mask]) if mask in npz.files else np.ones(x.shape[:2], bool)
      if m.shape != x.shape[:2] or m.dtype != np.bool_:
        raise ValueError(
          f"{path}: key {mask!r} must be bool {list(x.shape[:2])} (the valid steps of "
          f"{key!r}), got {m.dtype} {list(m.shape)}."
        )
      columns[mask] = m
  return table_lib.ArrayTable(columns)


def predictor(ctx: context.Context, method: str):
  """``fn(table) -> outputs [N, C]``: the visual-only test-time path of ``method``.

  A method tuned on validation (``config.tune``) picks a candidate per run: ``method`` may
  name any candidate, each of which the run trained.

  Raises:
    ValueError: for a method that needs privileged inputs at test time (the joint teacher)
      or one this run did not train.
  """
  trained = tuning.trained(ctx.config.methods, ctx.config.get("tune") or {})
  if method not in trained:
    config_path = ctx.workdir.parent / "config.json"
    raise ValueError(
      f"{config_path} lists the methods and candidates {list(trained)}, not {method!r}. If "
      f"{method!r} was trained earlier in this workdir, a later `experiments.train` run there "
      "with other methods replaced that config.json; predict serves only the methods it lists."
    )
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
  predict_fn = predictor(ctx, method)
  table = read_visual(input_path, ctx.schema, ctx.config.visual)
  outputs = np.asarray(predict_fn(table), dtype=np.float32)
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
