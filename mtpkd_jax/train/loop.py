"""The host loop of one training stage: resume, step, log, validate, checkpoint, hand on."""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import tqdm
from absl import logging

from mtpkd_jax.train import checkpoint, distributed, parallel
from mtpkd_jax.train.state import TrainState
from mtpkd_jax.train.writers import MetricWriter

PyTree = Any
EvalFn = Callable[[PyTree, PyTree], Mapping[str, float]]

_MODES = ("max", "min")


@dataclasses.dataclass(frozen=True)
class PartSelection:
  """Top-level modules of a model chosen on their own validation metric.

  The stage output takes these modules' variables from the step with the best `metric`,
  and everything else from the step with the best `best_metric` of `fit` (e.g. the T-Nets
  on their own loss, the fusion on the task score). Only for modules whose inputs no other
  trained module computes (the T-Nets on frozen backbones' tokens): grafted onto another
  step's modules, they would run on inputs they were not selected on.

  Attributes:
    modules: Top-level names in the model's `params` (and `batch_stats`, where present).
    metric: Name in `eval_fn`'s output.
    mode: `"max"` or `"min"`.
  """

  modules: tuple[str, ...]
  metric: str
  mode: str = "max"


@dataclasses.dataclass(frozen=True)
class StageRun:
  """Where one stage trains and how it is saved: what every layer of its training shares.

  Attributes:
    name: the stage's name: its folder under ``workdir``, the progress bar's label, the name
      errors give.
    workdir: the run's directory.
    mesh: the 1-D ``("data",)`` mesh (:func:`mtpkd_jax.train.parallel.make_mesh`).
    rng: the stage's base key.
    checkpoint_every: save the train state every this many steps.
    keep_checkpoints: the number of latest train-state checkpoints kept.
  """

  name: str
  workdir: Path
  mesh: jax.sharding.Mesh
  rng: jax.Array
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3


@dataclasses.dataclass(frozen=True)
class FitResult:
  """What `fit` returns.

  Attributes:
    state: The train state after the last step (replicated on the mesh).
    start_step: Step the run started from: 0 for a fresh stage, else the resumed checkpoint.
    best: Meta of the best-on-validation copy (`step`, `metric`, `mode`, `value`,
      `metrics`), or `None` without `eval_fn`.
    parts: `{part: meta}` of the best copy of each `PartSelection`.
    output: `{"params": ..., "batch_stats": ...}` saved as the stage output: the best copy
      (with its parts' own best copies grafted in) with `eval_fn`, else the last state.
  """

  state: TrainState
  start_step: int
  best: dict[str, Any] | None
  parts: dict[str, dict[str, Any]]
  output: dict[str, PyTree]


def _improves(value: float, best: Mapping[str, Any] | None, mode: str, step: int) -> bool:
  if best is None:
    return True
  # A replayed step after a resume may already own the best copy.
  if step <= best["step"]:
    return False
  return value > best["value"] if mode == "max" else value < best["value"]


def _check_resumed(stage: str, copy: str, best: Mapping[str, Any] | None, metric, mode) -> None:
  if best is not None and (best["metric"], best["mode"]) != (metric, mode):
    raise ValueError(
      f"Stage {stage!r} selected its {copy} copy by {best['metric']} ({best['mode']}), "
      f"not {metric} ({mode})."
    )


def _graft_parts(
  output: dict[str, PyTree], part_outputs: Mapping[str, PyTree], parts: Mapping[str, PartSelection]
) -> dict[str, PyTree]:
  """`output` with each part's modules replaced by those of its own best copy."""
  collections = {name: dict(tree) for name, tree in output.items()}
  for part, selection in parts.items():
    for name, tree in collections.items():
      for module in selection.modules:
        if module in tree:
          tree[module] = part_outputs[part][name][module]
  return collections


def fit(
  state: TrainState,
  per_device_step: parallel.StepFn,
  run: StageRun,
  *,
  batch_for_step: Callable[[int], PyTree],
  num_steps: int,
  frozen: PyTree = None,
  eval_fn: EvalFn | None = None,
  eval_every: int | None = None,
  best_metric: str | None = None,
  best_mode: str = "max",
  parts: Mapping[str, PartSelection] | None = None,
  log_every: int = 50,
  writer: MetricWriter | None = None,
) -> FitResult:
  """Trains one stage to `num_steps` updates, resuming from its latest checkpoint.

  Update `i` (0-based, `i = state.step` before it) uses `batch_for_step(i)` and the key
  `fold_in(run.rng, i)` (inside the step), so a resumed run replays exactly what an
  uninterrupted run of the same seed would. The train state is checkpointed under
  `<workdir>/<stage>/checkpoints` every `run.checkpoint_every` steps and at the end. With
  `eval_fn`, validation runs every `eval_every` steps and at the end; the variables with
  the best `best_metric` are kept under `<workdir>/<stage>/best` and become the stage output
  (model selection on validation only; the test split is never seen here), except the
  modules of each `PartSelection`, taken from their own best step. Without
  `eval_fn`, the last state is the output. The output is written under
  `<workdir>/<stage>/output`, where `checkpoint.load_stage_output` finds it.

  Args:
    state: A freshly initialised state (the restore template when resuming).
    per_device_step: `step(state, batch, rng, frozen) -> (state, metrics)` for one device
      (see `step.make_train_step`); run here with `parallel.data_parallel`. Its metrics
      must include `loss` and `finite`.
    run: The stage's name, directory, mesh, base key and checkpoint schedule.
    batch_for_step: `i -> this process's rows of global batch i` (pytree of host arrays
      `[global_batch // processes, ...]`, divisible by the process's devices; the whole
      batch with one process; see `parallel.shard_batch`). Must be a pure function of `i`.
    num_steps: Total number of updates of the stage.
    frozen: Frozen inputs of the step (e.g. teacher variables), never trained or saved.
    eval_fn: `eval_fn(params, batch_stats) -> {name: float}` on the validation split.
    eval_every: Validate every this many steps (e.g. steps per epoch); only at the end if
      `None`.
    best_metric: Name in `eval_fn`'s output used for model selection; required with
      `eval_fn`.
    best_mode: `"max"` or `"min"`: whether a larger or a smaller `best_metric` is better.
    parts: `{part: PartSelection}`: modules selected on their own metric, each with its
      best copy under `<workdir>/<stage>/best_<part>`; needs `eval_fn`.
    log_every: Write train metrics (prefixed `train/`) every this many steps;
      validation metrics are written as `val/<name>` whenever computed.
    writer: Where metrics go; none are written if `None`.

  Returns:
    A `FitResult`.

  Raises:
    FloatingPointError: If an update gives a non-finite loss or gradient, naming the stage
      and the step. That state is not saved; the last good checkpoint stays the latest.
    ValueError: For inconsistent arguments, or a checkpoint beyond `num_steps`.
  """
  if eval_fn is not None and best_metric is None:
    raise ValueError("fit(eval_fn=...) needs best_metric to select the model on.")
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps} must be >= 1.")
  parts = dict(parts or {})
  if parts and eval_fn is None:
    raise ValueError("fit(parts=...) needs eval_fn to select the parts on.")
  for mode in (best_mode, *(p.mode for p in parts.values())):
    if mode not in _MODES:
      raise ValueError(f"mode {mode!r} is not one of {_MODES}.")
  unknown = {m for p in parts.values() for m in p.modules} - set(state.params)
  if unknown:
    raise ValueError(
      f"fit(parts=...) names modules {sorted(unknown)} that are not in the params "
      f"(top-level modules: {sorted(state.params)})."
    )
  stage, mesh = run.name, run.mesh
  train_step = parallel.data_parallel(per_device_step, mesh)
  state, rng, frozen = parallel.replicate_on_mesh((state, run.rng, frozen), mesh)

  with checkpoint.StageCheckpointer(
    run.workdir, stage, save_every=run.checkpoint_every, keep=run.keep_checkpoints
  ) as ckpt:
    state = ckpt.restore_latest(state)
    start_step = int(state.step)
    if start_step > num_steps:
      raise ValueError(
        f"Stage {stage!r} has a checkpoint at step {start_step} > num_steps={num_steps}"
        f" in {ckpt.directory}."
      )
    if start_step:
      logging.info("Stage %s: resuming from step %d.", stage, start_step)
    best = ckpt.best() if eval_fn is not None else None
    _check_resumed(stage, "best", best, best_metric, best_mode)
    part_best = {part: ckpt.best(f"best_{part}") for part in parts}
    for part, selection in parts.items():
      _check_resumed(stage, f"best_{part}", part_best[part], selection.metric, selection.mode)

    bar = tqdm.tqdm(
      total=num_steps,
      initial=start_step,
      desc=stage,
      unit="step",
      disable=not distributed.is_main(),
    )
    if start_step < num_steps:
      batch = parallel.shard_batch(batch_for_step(start_step), mesh)
    for step in range(start_step + 1, num_steps + 1):
      state, metrics = train_step(state, batch, rng, frozen)
      # Prepared while the device runs the update.
      if step < num_steps:
        batch = parallel.shard_batch(batch_for_step(step), mesh)
      metrics = jax.device_get(metrics)
      if not metrics["finite"]:
        bar.close()
        raise FloatingPointError(
          f"Stage {stage!r}: non-finite loss ({metrics['loss']}) or gradients at "
          f"step {step} (batch_for_step({step - 1})). Nothing was saved for it; "
          f"the last good checkpoint is step {ckpt.latest_step()} in "
          f"{ckpt.directory}."
        )
      bar.update()
      bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)
      if writer is not None and (step % log_every == 0 or step == num_steps):
        del metrics["finite"]
        writer.write_scalars(step, {f"train/{k}": v for k, v in metrics.items()})
      if eval_fn is not None and (
        step == num_steps or (eval_every is not None and step % eval_every == 0)
      ):
        val = dict(eval_fn(state.params, state.batch_stats))
        if writer is not None:
          writer.write_scalars(step, {f"val/{k}": v for k, v in val.items()})
        if _improves(val[best_metric], best, best_mode, step):
          best = ckpt.save_best(state, best_metric, best_mode, val)
        for part, p in parts.items():
          if _improves(val[p.metric], part_best[part], p.mode, step):
            part_best[part] = ckpt.save_best(state, p.metric, p.mode, val, f"best_{part}")
      ckpt.save(state, force=step == num_steps)
    bar.close()
    if writer is not None:
      writer.flush()

    if eval_fn is None:
      output, source_step, selected_by, val = (
        checkpoint.variables_of(state),
        num_steps,
        "last",
        None,
      )
    else:
      target = checkpoint.variables_of(state)
      output, _ = ckpt.restore_best(target=target)
      part_outputs = {part: ckpt.restore_best(target, f"best_{part}")[0] for part in parts}
      output = _graft_parts(output, part_outputs, parts)
      source_step, val = best["step"], best["metrics"]
      selected_by = "; ".join(
        [f"best {best_metric} ({best_mode})"]
        + [
          f"{', '.join(p.modules)}: best {p.metric} ({p.mode}) at step {part_best[part]['step']}"
          for part, p in parts.items()
        ]
      )
    ckpt.save_output(
      num_steps,
      output,
      source_step=source_step,
      selected_by=selected_by,
      metrics=val,
      parts=part_best,
    )
  return FitResult(state=state, start_step=start_step, best=best, parts=part_best, output=output)
