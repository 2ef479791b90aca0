"""Per-stage checkpoints with orbax: resume, best-on-validation copy and the stage output.

Layout of one stage (each leaf directory is an orbax `CheckpointManager` of step folders)::

    <workdir>/<stage>/
      checkpoints/<step>/state/     the full TrainState tree (step, params, batch_stats,
                                    opt_state), every `save_every` steps and at the end; the
                                    latest `keep` are kept. Resumption reads the latest one.
      best/<step>/variables/        {params, batch_stats} of the best validation score so far
      best/<step>/meta/             JSON {step, metric, mode, value, metrics}
      best_<part>/<step>/...        the same for a part selected on its own metric (see
                                    `loop.PartSelection`), e.g. `best_tnets`
      output/<step>/variables/      {params, batch_stats}: what the next stage loads
      output/<step>/meta/           JSON {step (source), final_step, selected_by, metrics,
                                    parts: {part: meta of its best copy}}

Frozen inputs (a teacher) never appear: only the `TrainState` is written. A stage reads its
predecessor with `load_stage_output`, which fails loudly when the predecessor has not run.

A disk that fills or a machine that dies mid-write can leave a step folder damaged. A damaged
train-state step is moved to `<stage>/damaged/checkpoints/<step>` and the stage resumes from
the newest intact one, with a warning that names both; a damaged best copy or stage output
(one of each is kept), or no intact train state, stops with `DamagedCheckpointError`, which
names the step folder and the stage folder to delete to retrain the stage.
"""

import copy
import functools
import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mtpkd_jax.train import parallel
from mtpkd_jax.train.state import TrainState

PyTree = Any

_STATE_FIELDS = ("step", "params", "batch_stats", "opt_state")
_SETTLE_S = 1.0


class DamagedCheckpointError(RuntimeError):
  """A saved step that cannot be read back: its folder, and what to delete to retrain."""


def _damaged(stage: str, what: str, folder: Path, error: Exception) -> DamagedCheckpointError:
  """The error for ``stage``'s unreadable ``what`` in ``folder`` (``<stage>/<kind>/<step>``).

  The failed restore's other reads are still pending; when they end, their callbacks print
  ``RuntimeError: Event loop is closed`` from their threads. A moment's wait lets that noise
  come before this error, so that the user's last lines name the damaged folder.
  """
  time.sleep(_SETTLE_S)
  stage_folder = folder.parent.parent
  return DamagedCheckpointError(
    f"Stage {stage!r}: its {what} {folder} is damaged ({type(error).__name__}: "
    f"{str(error)[:300]}), e.g. by a full disk or a run killed while writing. Delete (or "
    f"move away) {stage_folder} and rerun with the same workdir to retrain stage {stage!r}; "
    "the stages built on it are retrained after it."
  )


def _out_of_memory(error: Exception) -> bool:
  """Whether a failed restore ran out of host or device memory (the step may be intact)."""
  return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)


def _unused(path: Path) -> Path:
  """`path`, or `path.1`, `path.2`, ...: the first that does not exist."""
  candidate, number = path, 0
  while candidate.exists():
    number += 1
    candidate = path.with_name(f"{path.name}.{number}")
  return candidate


def stage_dir(workdir: str | Path, stage: str) -> Path:
  """Returns `<workdir>/<stage>`, the directory of everything one stage writes."""
  return Path(workdir).resolve() / stage


def _manager(
  directory: Path, *, keep: int, save_every: int = 1, read_only: bool = False
) -> ocp.CheckpointManager:
  """A manager of `variables` + `meta` items (best, output) or of a `state` item."""
  options = ocp.CheckpointManagerOptions(
    save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
    preservation_policy=ocp.checkpoint_managers.LatestN(keep),
    # A killed run leaves `<step>.orbax-checkpoint-tmp-*` folders behind.
    cleanup_tmp_directories=not read_only,
    create=not read_only,
    read_only=read_only,
    # Every process saves together; the managers of one stage save the same step at once,
    # so their barriers need names of their own.
    multiprocessing_options=ocp.options.MultiprocessingOptions(
      barrier_sync_key_prefix=hashlib.sha1(str(directory).encode()).hexdigest()[:12]
    ),
  )
  # Registering the handlers up front lets `item_metadata` read a step not saved by this
  # process (needed to restore without a target).
  handlers = {
    "state": ocp.StandardCheckpointHandler(),
    "variables": ocp.StandardCheckpointHandler(),
    "meta": ocp.JsonCheckpointHandler(),
  }
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _abstract(tree: PyTree) -> PyTree:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def variables_of(state: TrainState) -> dict[str, PyTree]:
  """Returns `{"params": ..., "batch_stats": ...}`, the part of a state a later stage uses."""
  return {"params": state.params, "batch_stats": state.batch_stats}


def _save_variables(
  manager: ocp.CheckpointManager, step: int, variables: PyTree, meta: Mapping[str, Any]
) -> None:
  manager.save(
    step,
    args=ocp.args.Composite(
      variables=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(dict(meta))
    ),
    force=True,
  )


def _default_sharding() -> jax.sharding.Sharding:
  """The first device; with several processes, every device of every process (replicated)."""
  if jax.process_count() > 1:
    return NamedSharding(parallel.make_mesh(), P())
  return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _restore_variables(
  manager: ocp.CheckpointManager, target: PyTree | None
) -> tuple[dict[str, PyTree], dict[str, Any]]:
  """Restores the latest `(variables, meta)`; without `target`, onto the default device.

  With several processes, "the default device" is every device: the variables are replicated
  on the mesh of all processes' devices.
  """
  step = manager.latest_step()
  if target is None:
    sharding = _default_sharding()
    target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
      manager.item_metadata(step)["variables"],
    )
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(_abstract(target)), meta=ocp.args.JsonRestore()
    ),
  )
  return restored["variables"], restored["meta"]


class StageCheckpointer:
  """Checkpoints of one stage under `<workdir>/<stage>` (layout in the module docstring).

  Saves are asynchronous; `close()` (or leaving the `with` block) waits for them.

  Args:
    workdir: Root directory of the experiment.
    stage: Stage name, e.g. `"teacher"`; also the subdirectory name.
    save_every: Save the train state when `step % save_every == 0` (and with `force`).
    keep: Number of latest train-state checkpoints to keep.
  """

  def __init__(self, workdir: str | Path, stage: str, *, save_every: int, keep: int = 3):
    if save_every < 1 or keep < 1:
      raise ValueError(f"save_every={save_every} and keep={keep} must be >= 1.")
    self.stage = stage
    self.directory = stage_dir(workdir, stage)
    self._states = _manager(self.directory / "checkpoints", keep=keep, save_every=save_every)
    self._bests = {}
    self._output = _manager(self.directory / "output", keep=1)

  def __enter__(self) -> "StageCheckpointer":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Waits for pending saves and releases the managers."""
    for manager in (self._states, *self._bests.values(), self._output):
      manager.close()

  def _best(self, copy: str) -> ocp.CheckpointManager:
    if copy != "best" and not copy.startswith("best_"):
      raise ValueError(f"copy={copy!r} must be 'best' or 'best_<part>'.")
    if copy not in self._bests:
      self._bests[copy] = _manager(self.directory / copy, keep=1)
    return self._bests[copy]

  def saved_steps(self) -> list[int]:
    """Steps with a train-state checkpoint, ascending."""
    return sorted(self._states.all_steps())

  def latest_step(self) -> int | None:
    """Step of the latest train-state checkpoint, or `None` if there is none."""
    return self._states.latest_step()

  def save(self, state: TrainState, *, force: bool = False) -> bool:
    """Saves `state` if its step is due (`step % save_every == 0`) or `force`.

    Args:
      state: The (replicated) train state.
      force: Save regardless of the interval (used at the end of a stage).

    Returns:
      Whether a checkpoint was written; never for a step that already has one.
    """
    step = int(state.step)
    if step in self._states.all_steps():
      return False
    tree = {name: getattr(state, name) for name in _STATE_FIELDS}
    return self._states.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree)), force=force
    )

  def restore_latest(self, state: TrainState) -> TrainState:
    """Restores the latest checkpoint into `state`'s structure, shardings and dtypes.

    Args:
      state: A freshly initialised state: the template (also supplies the static
        `apply_fn` and `tx`).

    Returns:
      The restored state, or `state` itself if the stage has no checkpoint yet. A newest step
      that fails twice to restore, with an error other than running out of memory, is taken
      as damaged: it is moved to `<stage>/damaged/checkpoints/<step>` (one process, once a
      call) and the step before it restored, with a warning naming both.

    Raises:
      DamagedCheckpointError: if no step can be read, a second step cannot either (or, with
        several processes, the newest cannot), naming the step and the folder to delete.
      MemoryError, or orbax's error, when the restore ran out of memory (nothing is moved).
    """
    target = {name: getattr(state, name) for name in _STATE_FIELDS}
    args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(target)))
    moved = None  # Where this call moved a damaged step; it moves one at most.
    while (step := self._states.latest_step()) is not None:
      folder = self.directory / "checkpoints" / str(step)
      try:
        return state.replace(**self._restore_twice(step, args)["state"])
      except Exception as error:  # noqa: BLE001  (orbax raises many kinds on a damaged step)
        if _out_of_memory(error):
          raise
        earlier = [s for s in self._states.all_steps() if s < step]
        if moved is not None or not earlier or jax.process_count() > 1:
          damaged = _damaged(self.stage, "newest train-state checkpoint", folder, error)
          if moved is not None:
            damaged = DamagedCheckpointError(
              f"{damaged} (Its newer step was damaged too and moved to {moved}.)"
            )
          raise damaged from None
        moved = _unused(self.directory / "damaged" / "checkpoints" / str(step))
        moved.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(moved)
        self._states.reload()
        logging.warning(
          "Stage %r: checkpoint step %d is damaged (%s: %s), moved to %s; resuming from step %d.",
          self.stage,
          step,
          type(error).__name__,
          str(error)[:200],
          moved,
          max(earlier),
        )
    return state

  def _restore_twice(self, step: int, args: ocp.args.Composite) -> dict[str, Any]:
    """Restores `step`, once more if the first read failed (a passing I/O error).

    Raises:
      The second read's error; at once, without a second read, an out-of-memory error (not
      a sign of a damaged step).
    """
    try:
      return self._states.restore(step, args=args)
    except Exception as error:  # noqa: BLE001  (orbax raises many kinds on a damaged step)
      if _out_of_memory(error):
        raise
    return self._states.restore(step, args=args)

  def best(self, copy: str = "best") -> dict[str, Any] | None:
    """Meta of a best-on-validation copy (`step`, `metric`, `mode`, `value`, `metrics`).

    Args:
      copy: `"best"`, the whole model's copy, or `"best_<part>"`, a part's.
    """
    manager = self._best(copy)
    step = manager.latest_step()
    if step is None:
      return None
    try:
      return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # noqa: BLE001  (orbax raises many kinds on a damaged step)
      raise _damaged(self.stage, f"{copy} copy", self.directory / copy / str(step), error) from None

  def save_best(
    self,
    state: TrainState,
    metric: str,
    mode: str,
    metrics: Mapping[str, float],
    copy: str = "best",
  ) -> dict[str, Any]:
    """Replaces a best copy with `state`'s variables; returns its meta (see `best`).

    Args:
      state: The state whose variables are the new best.
      metric: Name of the selection metric in `metrics`.
      mode: `"max"` or `"min"`, recorded so a resumed run selects the same way.
      metrics: Validation metrics of `state`.
      copy: Which copy (see `best`).
    """
    meta = {
      "step": int(state.step),
      "metric": metric,
      "mode": mode,
      "value": float(metrics[metric]),
      "metrics": {k: float(v) for k, v in metrics.items()},
    }
    _save_variables(self._best(copy), int(state.step), variables_of(state), meta)
    return meta

  def restore_best(
    self, target: PyTree | None = None, copy: str = "best"
  ) -> tuple[dict[str, PyTree], dict[str, Any]]:
    """Returns `(variables, meta)` of a best copy (see `best`), restored like `target` if given.

    Raises:
      FileNotFoundError: If no such copy was saved.
      DamagedCheckpointError: If it cannot be read, naming its folder.
    """
    manager = self._best(copy)
    if manager.latest_step() is None:
      raise FileNotFoundError(f"Stage {self.stage!r} has no {copy} copy in {self.directory}.")
    manager.wait_until_finished()
    try:
      return _restore_variables(manager, target)
    except Exception as error:  # noqa: BLE001  (orbax raises many kinds on a damaged step)
      folder = self.directory / copy / str(manager.latest_step())
      raise _damaged(self.stage, f"{copy} copy", folder, error) from None

  def save_output(
    self,
    final_step: int,
    variables: PyTree,
    *,
    source_step: int,
    selected_by: str,
    metrics: Mapping[str, float] | None = None,
    parts: Mapping[str, Mapping[str, Any]] | None = None,
  ) -> None:
    """Writes the stage output the next stage loads (see `load_stage_output`).

    Args:
      final_step: The stage's last step; the output's folder name.
      variables: `{"params": ..., "batch_stats": ...}` to hand on.
      source_step: Step the variables come from (the best step, or `final_step`).
      selected_by: How they were chosen, e.g. `"best val/ccc (max)"` or `"last"`.
      metrics: Validation metrics of the chosen variables, if any.
      parts: Meta of the best copy of each part selected on its own (see `best`).
    """
    if final_step in self._output.all_steps():
      return
    meta = {
      "step": source_step,
      "final_step": final_step,
      "selected_by": selected_by,
      "metrics": {k: float(v) for k, v in (metrics or {}).items()},
      "parts": dict(parts or {}),
    }
    _save_variables(self._output, final_step, variables, meta)


def load_stage_output(
  workdir: str | Path,
  stage: str,
  *,
  target: PyTree | None = None,
  required_by: str | None = None,
) -> tuple[dict[str, PyTree], dict[str, Any]]:
  """Loads the output a finished stage saved for the next one.

  Args:
    workdir: Root directory of the experiment.
    stage: Name of the stage to load, e.g. `"backbone_visual"`.
    target: Optional `{"params": ..., "batch_stats": ...}` of arrays or
      `jax.ShapeDtypeStruct` values giving the structure, dtypes and shardings to restore into.
      Without it, arrays are restored onto the first device (with several processes,
      replicated on every device of every process); read from disk once per process and
      written output, kept in host memory, and put on the devices anew by every load.
    required_by: Name of the stage asking, used in the error message.

  Returns:
    `(variables, meta)`: `variables` is `{"params": ..., "batch_stats": ...}` and `meta` the
    JSON written with it (`step`, `final_step`, `selected_by`, `metrics`, `parts`).

  Raises:
    FileNotFoundError: If `stage` has no saved output, naming the stage and the path; a
      stage must never start from scratch when its predecessor is missing.
    DamagedCheckpointError: If the output cannot be read, naming its folder and the stage
      folder to delete to retrain the stage.
  """
  directory = stage_dir(workdir, stage) / "output"
  manager = _manager(directory, keep=1, read_only=True) if directory.is_dir() else None
  if manager is None or manager.latest_step() is None:
    who = f"Stage {required_by!r} needs" if required_by else "Loading"
    raise FileNotFoundError(
      f"{who} the output of stage {stage!r}, but nothing was saved at {directory}. "
      f"Run stage {stage!r} first (with the same workdir)."
    )
  step = manager.latest_step()
  try:
    with manager:
      if target is not None:
        return _restore_variables(manager, target)
    written = (directory / str(step)).stat()
    host, meta = _read_output(directory, step, written.st_ino, written.st_mtime_ns)
  except Exception as error:  # noqa: BLE001  (orbax raises many kinds on a damaged step)
    raise _damaged(stage, "saved output", directory / str(step), error) from None
  # Fresh device arrays and meta: a train step that donates its state, or a caller that edits
  # the meta, must not change what the next load gets.
  return jax.device_put(host, _default_sharding()), copy.deepcopy(meta)


@functools.lru_cache(maxsize=8)
def _read_output(directory: Path, step: int, inode: int, mtime_ns: int):
  """A stage output's `(variables, meta)`, variables in host memory, once per step folder.

  Every later stage, predictor and provenance check of a run reads the same few outputs,
  some tens of times each, and orbax takes about 0.5 s a read whatever the size. An output
  is written once; a stage rerun writes a new folder (another inode and mtime), so the key
  sees it. Host memory, not the devices', holds the copies.
  """
  del step, inode, mtime_ns  # The cache's key.
  with _manager(directory, keep=1, read_only=True) as manager:
    variables, meta = _restore_variables(manager, None)
  return jax.device_get(variables), meta
