"""Per-stage checkpoints: keep-N, save-every-K, resume, best copy, stage output."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import train_toys

from mtpkd_jax.train import checkpoint, parallel


@pytest.fixture(scope="module")
def mesh():
  return parallel.make_mesh(8)


@pytest.fixture
def bn_state(mesh):
  return parallel.replicate_on_mesh(train_toys.make_state(train_toys.MLP(batch_norm=True)), mesh)


def _at_step(state, step):
  """`state` moved to `step`, with parameters that depend on it."""
  return state.replace(
    step=jnp.asarray(step, jnp.int32),
    params=jax.tree.map(lambda p: p + step, state.params),
  )


def test_save_every_k_keeps_last_n_and_resumes(tmp_path, bn_state):
  with checkpoint.StageCheckpointer(tmp_path, "stage0", save_every=2, keep=2) as ckpt:
    saved = [ckpt.save(_at_step(bn_state, s)) for s in range(1, 8)]
    assert ckpt.save(_at_step(bn_state, 7), force=True)
    assert not ckpt.save(_at_step(bn_state, 7), force=True)  # Already there.
  assert saved == [False, True, False, True, False, True, False]

  with checkpoint.StageCheckpointer(tmp_path, "stage0", save_every=2, keep=2) as ckpt:
    assert ckpt.saved_steps() == [6, 7]
    restored = ckpt.restore_latest(bn_state)
  expected = _at_step(bn_state, 7)
  assert int(restored.step) == 7
  chex.assert_trees_all_equal(restored.params, expected.params)
  chex.assert_trees_all_equal(restored.batch_stats, expected.batch_stats)
  chex.assert_trees_all_equal_structs(restored.opt_state, bn_state.opt_state)
  assert restored.tx is bn_state.tx and restored.apply_fn is bn_state.apply_fn
  leaf = restored.params["Dense_0"]["kernel"]
  assert leaf.sharding == bn_state.params["Dense_0"]["kernel"].sharding


def test_restore_without_checkpoint_returns_template(tmp_path, bn_state):
  with checkpoint.StageCheckpointer(tmp_path, "fresh", save_every=5) as ckpt:
    assert ckpt.latest_step() is None and ckpt.best() is None
    assert ckpt.restore_latest(bn_state) is bn_state
    with pytest.raises(FileNotFoundError, match="'fresh' has no best copy"):
      ckpt.restore_best()


def test_saved_state_holds_only_the_train_state(tmp_path, bn_state):
  """Frozen inputs are step arguments, so nothing but the state's fields is written."""
  with checkpoint.StageCheckpointer(tmp_path, "student", save_every=1) as ckpt:
    ckpt.save(_at_step(bn_state, 1))
  step_dir = tmp_path / "student" / "checkpoints" / "1"
  assert sorted(p.name for p in step_dir.iterdir() if p.is_dir()) == ["state"]
  saved = ocp.StandardCheckpointer().metadata(step_dir / "state").item_metadata.tree
  assert set(saved) == {"step", "params", "batch_stats", "opt_state"}
  assert jax.tree.structure(saved["params"]) == jax.tree.structure(bn_state.params)


def test_best_copy_round_trip(tmp_path, bn_state):
  with checkpoint.StageCheckpointer(tmp_path, "teacher", save_every=10) as ckpt:
    ckpt.save_best(_at_step(bn_state, 3), "acc", "max", {"acc": 0.5, "f1": 0.25})
    meta = ckpt.save_best(_at_step(bn_state, 5), "acc", "max", {"acc": 0.75, "f1": 0.5})
  assert meta == {
    "step": 5,
    "metric": "acc",
    "mode": "max",
    "value": 0.75,
    "metrics": {"acc": 0.75, "f1": 0.5},
  }
  with checkpoint.StageCheckpointer(tmp_path, "teacher", save_every=10) as ckpt:
    assert ckpt.best() == meta
    variables, restored_meta = ckpt.restore_best(checkpoint.variables_of(bn_state))
  assert restored_meta == meta
  chex.assert_trees_all_equal(
    variables, checkpoint.variables_of(_at_step(bn_state, 5)), strict=False
  )
  assert sorted(p.name for p in (tmp_path / "teacher" / "best").iterdir()) == ["5"]


def test_stage_output_loads_with_and_without_target(tmp_path, bn_state):
  variables = checkpoint.variables_of(_at_step(bn_state, 4))
  with checkpoint.StageCheckpointer(tmp_path, "backbone", save_every=10) as ckpt:
    ckpt.save_output(9, variables, source_step=4, selected_by="best acc (max)")
  loaded, meta = checkpoint.load_stage_output(tmp_path, "backbone", required_by="teacher")
  assert meta == {
    "step": 4,
    "final_step": 9,
    "selected_by": "best acc (max)",
    "metrics": {},
    "parts": {},
  }
  chex.assert_trees_all_close(loaded, jax.device_get(variables))
  on_mesh, _ = checkpoint.load_stage_output(tmp_path, "backbone", target=variables)
  kernel = on_mesh["params"]["Dense_0"]["kernel"]
  assert kernel.sharding == variables["params"]["Dense_0"]["kernel"].sharding
  np.testing.assert_array_equal(kernel, variables["params"]["Dense_0"]["kernel"])


def test_missing_predecessor_is_a_clear_error(tmp_path, bn_state):
  expected_path = tmp_path.resolve() / "teacher" / "output"
  with pytest.raises(FileNotFoundError) as error:
    checkpoint.load_stage_output(tmp_path, "teacher", required_by="student")
  message = str(error.value)
  assert "Stage 'student' needs the output of stage 'teacher'" in message
  assert str(expected_path) in message and "Run stage 'teacher' first" in message
  assert not expected_path.exists()  # Loading must not create anything.

  # A stage that has checkpoints but never finished has no output either.
  with checkpoint.StageCheckpointer(tmp_path, "teacher", save_every=1) as ckpt:
    ckpt.save(_at_step(bn_state, 1))
  with pytest.raises(FileNotFoundError, match="Run stage 'teacher' first"):
    checkpoint.load_stage_output(tmp_path, "teacher")


def test_stage_output_is_read_once_until_the_stage_is_rewritten(tmp_path, bn_state, monkeypatch):
  reads = []
  restore = checkpoint._restore_variables
  monkeypatch.setattr(
    checkpoint, "_restore_variables", lambda *args: reads.append(1) or restore(*args)
  )
  variables = checkpoint.variables_of(_at_step(bn_state, 4))
  with checkpoint.StageCheckpointer(tmp_path, "joint", save_every=10) as ckpt:
    ckpt.save_output(9, variables, source_step=4, selected_by="last")
  first, meta = checkpoint.load_stage_output(tmp_path, "joint")
  # What a caller does to its copy stays its own: edit the meta, donate the arrays.
  meta["step"] = -1
  jax.jit(lambda tree: jax.tree.map(jnp.negative, tree), donate_argnums=0)(first)
  again, meta = checkpoint.load_stage_output(tmp_path, "joint")
  assert len(reads) == 1 and meta["step"] == 4
  chex.assert_trees_all_close(again, jax.device_get(variables))
  assert {leaf.sharding for leaf in jax.tree.leaves(again)} == {
    jax.sharding.SingleDeviceSharding(jax.devices()[0])
  }
  # Rerun (as a stale stage is): the same step, other values, read anew.
  (tmp_path / "joint").rename(tmp_path / "joint.stale")
  with checkpoint.StageCheckpointer(tmp_path, "joint", save_every=10) as ckpt:
    ckpt.save_output(
      9, checkpoint.variables_of(_at_step(bn_state, 7)), source_step=7, selected_by="last"
    )
  rerun, meta = checkpoint.load_stage_output(tmp_path, "joint")
  assert len(reads) == 2 and meta["step"] == 7
  chex.assert_trees_all_close(rerun, jax.device_get(checkpoint.variables_of(_at_step(bn_state, 7))))


# A failed restore's pending reads report `Event loop is closed` from their threads.
_PENDING_READS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _zero_data(folder):
  """Zeroes every array-data file under ``folder`` (a disk that lost the writes)."""
  files = [p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files
  for path in files:
    path.write_bytes(bytes(path.stat().st_size))


@_PENDING_READS
def test_a_damaged_newest_step_is_moved_aside_and_the_previous_one_resumed(
  tmp_path, bn_state, caplog
):
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    ckpt.save(_at_step(bn_state, 2))
    ckpt.save(_at_step(bn_state, 4))
  _zero_data(tmp_path / "s" / "checkpoints" / "4")
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    restored = ckpt.restore_latest(bn_state)
    assert ckpt.saved_steps() == [2]
    assert ckpt.save(_at_step(bn_state, 4))  # The step is written anew, not skipped.
  assert int(restored.step) == 2
  chex.assert_trees_all_equal(restored.params, _at_step(bn_state, 2).params)
  assert "checkpoint step 4 is damaged" in caplog.text and "resuming from step 2" in caplog.text
  assert (tmp_path / "s" / "damaged" / "checkpoints" / "4" / "state").is_dir()
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    assert int(ckpt.restore_latest(bn_state).step) == 4


def _failing_reads(ckpt, monkeypatch, errors):
  """Makes ``ckpt``'s next restores raise ``errors`` in turn, then read as usual."""
  restore, pending = ckpt._states.restore, list(errors)

  def flaky(*args, **kwargs):
    if pending:
      raise pending.pop(0)
    return restore(*args, **kwargs)

  monkeypatch.setattr(ckpt._states, "restore", flaky)


def test_a_read_that_fails_once_is_read_again_and_nothing_is_moved(
  tmp_path, bn_state, monkeypatch
):
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    ckpt.save(_at_step(bn_state, 2))
    ckpt.save(_at_step(bn_state, 4))
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    _failing_reads(ckpt, monkeypatch, [OSError(5, "Input/output error")])
    assert int(ckpt.restore_latest(bn_state).step) == 4
    assert ckpt.saved_steps() == [2, 4]
  assert not (tmp_path / "s" / "damaged").exists()


def test_running_out_of_memory_moves_no_step(tmp_path, bn_state, monkeypatch):
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    ckpt.save(_at_step(bn_state, 2))
    ckpt.save(_at_step(bn_state, 4))
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
    _failing_reads(ckpt, monkeypatch, [RuntimeError("RESOURCE_EXHAUSTED: out of memory")] * 3)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
      ckpt.restore_latest(bn_state)
    assert ckpt.saved_steps() == [2, 4]
  assert not (tmp_path / "s" / "damaged").exists()


@_PENDING_READS
def test_a_step_damaged_again_is_moved_beside_the_first_copy(tmp_path, bn_state):
  for _ in range(2):
    with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
      ckpt.save(_at_step(bn_state, 2))
      ckpt.save(_at_step(bn_state, 4))
    _zero_data(tmp_path / "s" / "checkpoints" / "4")
    with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=2) as ckpt:
      assert int(ckpt.restore_latest(bn_state).step) == 2
  assert sorted(p.name for p in (tmp_path / "s" / "damaged" / "checkpoints").iterdir()) == [
    "4",
    "4.1",
  ]


@_PENDING_READS
def test_two_damaged_steps_stop_after_moving_one(tmp_path, bn_state):
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=3) as ckpt:
    for step in (2, 4, 6):
      ckpt.save(_at_step(bn_state, step))
  for step in (4, 6):
    _zero_data(tmp_path / "s" / "checkpoints" / str(step))
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2, keep=3) as ckpt:
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"checkpoints/4 is damaged"):
      ckpt.restore_latest(bn_state)
    assert ckpt.saved_steps() == [2, 4]
  assert (tmp_path / "s" / "damaged" / "checkpoints" / "6").is_dir()


@_PENDING_READS
@pytest.mark.parametrize("damage", ["zero_data", "zero_metadata", "no_manifest"])
def test_a_damaged_only_step_stops_naming_the_step_and_what_to_delete(tmp_path, bn_state, damage):
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2) as ckpt:
    ckpt.save(_at_step(bn_state, 2))
  step = tmp_path / "s" / "checkpoints" / "2"
  if damage == "zero_data":
    _zero_data(step)
  elif damage == "zero_metadata":
    (step / "state" / "_METADATA").write_bytes(bytes(64))
  else:
    for path in step.rglob("manifest.ocdbt"):
      path.unlink()
  with checkpoint.StageCheckpointer(tmp_path, "s", save_every=2) as ckpt:
    with pytest.raises(checkpoint.DamagedCheckpointError) as error:
      ckpt.restore_latest(bn_state)
  message = str(error.value)
  assert f"checkpoint {step.resolve()} is damaged" in message
  assert f"Delete (or move away) {(tmp_path / 's').resolve()} and rerun" in message
  assert step.is_dir()  # Nothing is moved when nothing else can be resumed.


@_PENDING_READS
def test_a_damaged_output_or_best_copy_is_named(tmp_path, bn_state):
  variables = checkpoint.variables_of(_at_step(bn_state, 4))
  with checkpoint.StageCheckpointer(tmp_path, "joint", save_every=10) as ckpt:
    ckpt.save_best(_at_step(bn_state, 4), "acc", "max", {"acc": 0.5})
    ckpt.save_output(9, variables, source_step=4, selected_by="last")
  _zero_data(tmp_path / "joint" / "output" / "9")
  with pytest.raises(checkpoint.DamagedCheckpointError, match=r"saved output .*joint/output/9"):
    checkpoint.load_stage_output(tmp_path, "joint", required_by="student")
  (tmp_path / "joint" / "best" / "4" / "meta" / "metadata").write_bytes(bytes(8))
  with checkpoint.StageCheckpointer(tmp_path, "joint", save_every=10) as ckpt:
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"best copy .*joint/best/4"):
      ckpt.best()
