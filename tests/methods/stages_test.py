"""Stages load what their predecessors saved, never start from scratch, never leak."""

import dataclasses
import functools

import chex
import jax
import numpy as np
import optax
import pytest

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import networks, stages
from mtpkd_jax.train import checkpoint, parallel
from mtpkd_jax.train import state as state_lib
from mtpkd_jax.train import step as step_lib
from tests.methods.conftest import make_context, smoke_config


def test_a_stage_whose_predecessor_is_missing_stops_with_a_clear_error(tmp_path):
  ctx = make_context(smoke_config(tmp_path / "tfds"), tmp_path / "run")
  with pytest.raises(FileNotFoundError, match=r"Stage 'joint' needs .*'unimodal_video'"):
    stages.train_joint(ctx)
  with pytest.raises(FileNotFoundError, match=r"Stage 'alignment' needs .*'joint'"):
    stages.train_alignment(ctx)
  with pytest.raises(FileNotFoundError, match=r"Stage 'student_pkdot' needs .*'joint'"):
    stages.train_student(ctx, "pkdot")
  with pytest.raises(FileNotFoundError, match=r"'unimodal_video'"):
    stages.student_predictor(ctx, "mt_pkdot")
  # Nothing was trained or created by the failed stages.
  assert not (ctx.workdir / "joint").exists()


def _compose(ctx, backbone, joint_params, student, video):
  """The student's test-time path, assembled here from the public networks."""
  tokens = stages.unimodal_model(ctx, "video").apply(backbone, video)[1]
  hallucinated = stages.joint_model(ctx).apply(
    {"params": joint_params}, tokens, method=networks.JointTeacher.hallucinate
  )
  return stages.student_model(ctx).apply(student, tokens, lambda _: hallucinated)[0]


def test_the_student_path_runs_on_every_saved_stage(trained):
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  test = ctx.split["test"][:8]
  video = ctx.dataset.table.take(test, ["video"])["video"]
  outputs, _ = stages.student_predictor(ctx, "mt_pkdot")(ctx.dataset.table, test)
  load = lambda stage: checkpoint.load_stage_output(ctx.workdir, stage)[0]  # noqa: E731
  backbone, joint, student = load("unimodal_video"), load("joint"), load("student_mt_pkdot")
  np.testing.assert_allclose(
    outputs, _compose(ctx, backbone, joint["params"], student, video), rtol=1e-5, atol=1e-6
  )
  # A backbone, T-Net or student started from scratch would give other predictions.
  fresh = {
    "backbone": stages.unimodal_model(ctx, "video").init(jax.random.PRNGKey(9), video[:1]),
    "joint": stages.joint_model(ctx).init(
      jax.random.PRNGKey(9), [np.zeros((1, 2, config.embed_dim))] * 2
    )["params"],
  }
  for name, args in (
    ("backbone", (fresh["backbone"], joint["params"], student)),
    ("joint", (backbone, fresh["joint"], student)),
  ):
    assert not np.allclose(_compose(ctx, *args, video), outputs, atol=1e-4), name


def test_student_training_sees_no_privileged_input(trained, monkeypatch):
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  captured = {}

  def capture(ctx, stage, model, variables, loss_fn, table, *args, **kwargs):
    captured.update(table.take(np.arange(len(table))))
    raise StopIteration

  monkeypatch.setattr(stages, "_fit", capture)
  with pytest.raises(StopIteration):
    stages.train_student(ctx, "mt_pkdot")
  assert set(captured) == {"video", "teacher_z", "teacher_out", "y"}
  np.testing.assert_array_equal(captured["video"], stages.backbone_tokens(ctx, "test")["video"])


def test_scrambling_privileged_data_changes_the_teacher_not_the_students(trained):
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  columns = ctx.dataset.table.take(np.arange(len(ctx.dataset)))
  rng = np.random.default_rng(0)
  columns["physio"] = rng.permutation(columns["physio"])
  dataset = dataclasses.replace(ctx.dataset, table=table_lib.ArrayTable(columns))
  scrambled = dataclasses.replace(ctx, dataset=dataset, cache={})
  test = ctx.split["test"]
  teacher = stages.teacher_targets(ctx, "joint", "test")["teacher_out"][test]
  teacher_scrambled = stages.teacher_targets(scrambled, "joint", "test")["teacher_out"][test]
  assert not np.allclose(teacher, teacher_scrambled)
  for name in ("pkdot", "mt_pkdot"):
    student = stages.student_predictor(ctx, name)(ctx.dataset.table, test)[0]
    again = stages.student_predictor(scrambled, name)(scrambled.dataset.table, test)[0]
    np.testing.assert_array_equal(student, again)


def _student_setup(tmp_path):
  config = smoke_config(tmp_path)
  config.dropout_rate = 0.0  # Dropout masks differ per device by design.
  schema = schema_lib.Schema(
    (
      schema_lib.Modality("video", "video", (2, 8, 8, 3)),
      schema_lib.Modality("physio", "vector", (4,)),
    ),
    schema_lib.Task("classification", ("a", "b")),
  )
  ctx = stages.Context(
    config=config,
    schema=schema,
    dataset=None,
    split={},
    workdir=tmp_path,
    seed=0,
    mesh=parallel.make_mesh(1),
  )
  rng = np.random.default_rng(0)
  d, n = config.embed_dim, 16
  batches = [
    {
      "video": rng.normal(size=(n, 3, d)).astype(np.float32),
      "teacher_z": rng.normal(size=(n, 3, d)).astype(np.float32),
      "teacher_out": rng.normal(size=(n, 3, 2)).astype(np.float32),
      "y": rng.integers(0, 2, n).astype(np.int32),
    }
    for _ in range(3)
  ]
  model = stages.student_model(ctx)
  joint = stages.joint_model(ctx).init(jax.random.PRNGKey(1), [batches[0]["video"]] * 2)
  hallucinate = functools.partial(stages._hallucinate, ctx, joint["params"])
  variables = model.init(jax.random.PRNGKey(2), batches[0]["video"], hallucinate)
  # SGD: attention key biases have an exactly-zero gradient, which Adam would turn from
  # float noise into full-size steps that differ between device layouts.
  train_state = state_lib.create_train_state(model.apply, variables, optax.sgd(0.5))
  step = step_lib.make_train_step(stages.student_loss(ctx, "mt_pkdot", model))
  return train_state, step, batches, joint["params"]


def test_student_step_agrees_on_one_device_shard_map_and_pmap(tmp_path):
  """The global-batch structural loss makes data parallelism exact for MT-PKDOT."""
  assert jax.device_count() == 8
  initial, per_device_step, batches, joint_params = _student_setup(tmp_path)
  results = {}
  for devices in (1, 8):
    mesh = parallel.make_mesh(devices)
    step = parallel.data_parallel(per_device_step, mesh, donate_state=False)
    train_state = parallel.replicate_on_mesh(initial, mesh)
    frozen = parallel.replicate_on_mesh(joint_params, mesh)
    for batch in batches:
      train_state, metrics = step(
        train_state, parallel.shard_batch(batch, mesh), jax.random.PRNGKey(3), frozen
      )
    results[devices] = (train_state.params, metrics)
  step = parallel.pmap_step(per_device_step, donate_state=False)
  train_state = parallel.replicate(initial)
  for batch in batches:
    train_state, metrics = step(
      train_state, parallel.split_batch(batch, 8), jax.random.PRNGKey(3), joint_params
    )
  results["pmap"] = (parallel.unreplicate(train_state).params, parallel.unreplicate(metrics))
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), results[1][0], initial.params)
  assert any(jax.tree.leaves(moved))
  for key in (8, "pmap"):
    chex.assert_trees_all_close(results[key][0], results[1][0], rtol=1e-4, atol=1e-5)
    for name in ("loss", "ot", "centroid"):
      np.testing.assert_allclose(results[key][1][name], results[1][1][name], rtol=1e-4)
  assert float(results[1][1]["ot"]) > 0
