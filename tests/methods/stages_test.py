"""Stages load what their predecessors saved, never start from scratch, never leak."""

import dataclasses
import functools
import json
import shutil

import chex
import jax
import numpy as np
import optax
import pytest

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import backbones, context, graph, networks, objective, students, unimodal
from mtpkd_jax.methods import joint as joint_stage
from mtpkd_jax.methods.context import Memo
from mtpkd_jax.train import checkpoint, parallel
from mtpkd_jax.train import state as state_lib
from mtpkd_jax.train import step as step_lib
from tests.methods.conftest import make_context, smoke_config

pytestmark = pytest.mark.slow  # Trains the stages of the smoke comparison.


def test_a_stage_whose_predecessor_is_missing_stops_with_a_clear_error(tmp_path):
  ctx = make_context(smoke_config(tmp_path / "tfds"), tmp_path / "run")
  with pytest.raises(FileNotFoundError, match=r"Stage 'joint' needs .*'unimodal_video'"):
    graph.train_stage(ctx, Memo(), "joint")
  with pytest.raises(FileNotFoundError, match=r"Stage 'alignment' needs .*'joint'"):
    graph.train_stage(ctx, Memo(), "alignment")
  with pytest.raises(FileNotFoundError, match=r"Stage 'student_pkdot' needs .*'joint'"):
    graph.train_stage(ctx, Memo(), "student", "pkdot")
  with pytest.raises(FileNotFoundError, match=r"'unimodal_video'"):
    students.student_predictor(ctx, "mt_pkdot")
  # Nothing was trained or created by the failed stages.
  assert not (ctx.workdir / "joint").exists()


def _compose(ctx, backbone, joint_params, student, video):
  """The student's test-time path, assembled here from the public networks."""
  tokens = unimodal.unimodal_model(ctx, "video").apply(backbone, video)[1]
  hallucinated = joint_stage.joint_model(ctx).apply(
    {"params": joint_params}, tokens, method=networks.JointTeacher.hallucinate
  )
  return students.student_model(ctx).apply(student, tokens, lambda _: hallucinated)[0]


@pytest.mark.fast_compile
def test_the_student_path_runs_on_every_saved_stage(trained):
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  test = ctx.split["test"][:8]
  video = ctx.dataset.table.take(test, ["video"])["video"]
  outputs, _ = students.student_predictor(ctx, "mt_pkdot")(ctx.dataset.table, test)
  load = lambda stage: checkpoint.load_stage_output(ctx.workdir, stage)[0]  # noqa: E731
  backbone, joint, student = load("unimodal_video"), load("joint"), load("student_mt_pkdot")
  np.testing.assert_allclose(
    outputs, _compose(ctx, backbone, joint["params"], student, video), rtol=1e-5, atol=1e-6
  )
  # A backbone, T-Net or student started from scratch would give other predictions.
  tokens = np.zeros((1, 2, config.embed_dim), np.float32)
  fresh = {
    "backbone": unimodal.unimodal_model(ctx, "video").init(jax.random.PRNGKey(9), video[:1]),
    "joint": joint_stage.joint_model(ctx).init(jax.random.PRNGKey(9), [tokens] * 2)["params"],
  }
  hallucinate = functools.partial(joint_stage.hallucinate, ctx, joint["params"])
  fresh["student"] = students.student_model(ctx).init(jax.random.PRNGKey(9), tokens, hallucinate)
  for name, args in (
    ("backbone", (fresh["backbone"], joint["params"], student)),
    ("joint", (backbone, fresh["joint"], student)),
    ("student", (backbone, joint["params"], fresh["student"])),
  ):
    assert not np.allclose(_compose(ctx, *args, video), outputs, atol=1e-4), name


@pytest.mark.fast_compile
def test_student_training_sees_no_privileged_input(trained, monkeypatch):
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  captured = {}

  def capture(ctx, stage, model, variables, loss_fn, table, *args, **kwargs):
    captured.update(table.take(np.arange(len(table))))
    raise StopIteration

  monkeypatch.setattr(context.Context, "fit", capture)
  with pytest.raises(StopIteration):
    graph.train_stage(ctx, Memo(), "student", "mt_pkdot")
  assert set(captured) == {"video", "teacher_z", "teacher_out", "y"}
  tokens = backbones.backbone_tokens(ctx, Memo(), "test")
  np.testing.assert_array_equal(captured["video"], tokens["video"])


@pytest.mark.fast_compile
def test_students_retrained_on_scrambled_privileged_data_are_the_same_students(trained, tmp_path):
  """The teachers' targets are a student's only privileged signal: scrambling the privileged
  input with those targets held fixed, and training the student again, changes nothing."""
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  columns = ctx.dataset.table.take(np.arange(len(ctx.dataset)))
  columns["physio"] = np.random.default_rng(0).permutation(columns["physio"])
  dataset = dataclasses.replace(ctx.dataset, table=table_lib.ArrayTable(columns))
  rerun = tmp_path / ctx.workdir.name
  shutil.copytree(ctx.workdir, rerun, ignore=shutil.ignore_patterns("student_*"))
  scrambled = dataclasses.replace(ctx, dataset=dataset, workdir=rerun)
  test, memo = ctx.split["test"], Memo()
  teacher = students.teacher_targets(ctx, memo, "joint", "test")["teacher_out"][test]
  teacher_scrambled = students.teacher_targets(scrambled, Memo(), "joint", "test")
  assert not np.allclose(teacher, teacher_scrambled["teacher_out"][test])
  sources = ("joint", "aligned")
  fixed = Memo({("targets", s): students.teacher_targets(ctx, memo, s, "test") for s in sources})
  for name in ("pkdot", "mt_pkdot"):
    graph.train_stage(scrambled, fixed, "student", name)
    student = students.student_predictor(ctx, name)(ctx.dataset.table, test)[0]
    again = students.student_predictor(scrambled, name)(scrambled.dataset.table, test)[0]
    np.testing.assert_allclose(again, student, rtol=1e-5, atol=1e-6)


def _student_setup(
  tmp_path, task="classification", method="mt_pkdot", split=None, **mt_pkdot_params
):
  """A student's initial state, per-device step, 3 batches of 16 and frozen joint params.

  ``split`` is the context's (none by default: batches of 16 labelled rows).
  """
  config = smoke_config(tmp_path)
  config.method_params.mt_pkdot.update(mt_pkdot_params)
  assert config.dropout_rate > 0  # Per-example masks: the same on every device layout.
  names = ("a", "b") if task == "classification" else ("valence", "arousal")
  schema = schema_lib.Schema(
    (
      schema_lib.Modality("video", "video", (2, 8, 8, 3)),
      schema_lib.Modality("physio", "vector", (4,)),
    ),
    schema_lib.Task(task, names),
  )
  ctx = context.Context(
    config=config,
    schema=schema,
    dataset=None,
    split=split or {},
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
      "y": (
        rng.integers(0, 2, n).astype(np.int32)
        if task == "classification"
        else rng.uniform(-1, 1, (n, 2)).astype(np.float32)
      ),
    }
    for _ in range(3)
  ]
  model = students.student_model(ctx)
  joint = joint_stage.joint_model(ctx).init(jax.random.PRNGKey(1), [batches[0]["video"]] * 2)
  hallucinate = functools.partial(joint_stage.hallucinate, ctx, joint["params"])
  variables = model.init(jax.random.PRNGKey(2), batches[0]["video"], hallucinate)
  # SGD: attention key biases have an exactly-zero gradient, which Adam would turn from
  # float noise into full-size steps that differ between device layouts.
  train_state = state_lib.create_train_state(model.apply, variables, optax.sgd(0.5))
  step = step_lib.make_train_step(students.student_loss(ctx, method, model))
  return train_state, step, batches, joint["params"]


def _run_shard_map(initial, per_device_step, batches, joint_params, devices):
  mesh = parallel.make_mesh(devices)
  step = parallel.data_parallel(per_device_step, mesh, donate_state=False)
  train_state = parallel.replicate_on_mesh(initial, mesh)
  frozen = parallel.replicate_on_mesh(joint_params, mesh)
  for batch in batches:
    train_state, metrics = step(
      train_state, parallel.shard_batch(batch, mesh), jax.random.PRNGKey(3), frozen
    )
  return train_state.params, metrics


def _assert_same_training(results, reference, initial, names):
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), reference[0], initial.params)
  assert any(jax.tree.leaves(moved))
  for params, metrics in results:
    chex.assert_trees_all_close(params, reference[0], rtol=1e-4, atol=1e-5)
    for name in names:
      np.testing.assert_allclose(metrics[name], reference[1][name], rtol=1e-4, atol=1e-6)


@pytest.mark.fast_compile
def test_student_step_agrees_on_one_device_shard_map_and_pmap(tmp_path):
  """The global-batch structural loss makes data parallelism exact for MT-PKDOT."""
  assert jax.device_count() == 8
  initial, per_device_step, batches, joint_params = _student_setup(tmp_path)
  single = _run_shard_map(initial, per_device_step, batches, joint_params, 1)
  sharded = _run_shard_map(initial, per_device_step, batches, joint_params, 8)
  step = parallel.pmap_step(per_device_step, donate_state=False)
  train_state = parallel.replicate(initial)
  for batch in batches:
    train_state, metrics = step(
      train_state, parallel.split_batch(batch, 8), jax.random.PRNGKey(3), joint_params
    )
  pmapped = (parallel.unreplicate(train_state).params, parallel.unreplicate(metrics))
  _assert_same_training([sharded, pmapped], single, initial, ("loss", "ot", "centroid"))
  assert float(single[1]["ot"]) > 0


@pytest.mark.fast_compile
@pytest.mark.parametrize("method", ["pkd", "logit_kd", "spkd", "rkd", "pkdot", "mt_pkdot"])
def test_regression_students_train_identically_on_one_and_four_devices(tmp_path, method):
  """``1 - CCC`` and the routing are computed on the global batch, so 4 devices equal 1."""
  initial, per_device_step, batches, joint_params = _student_setup(tmp_path, "regression", method)
  single = _run_shard_map(initial, per_device_step, batches, joint_params, 1)
  sharded = _run_shard_map(initial, per_device_step, batches, joint_params, 4)
  _assert_same_training([sharded], single, initial, ("loss", "task"))


@pytest.mark.fast_compile
def test_a_method_variant_trains_with_its_overridden_parameters(tmp_path):
  """``mt_pkdot:routing=joint,gamma=0`` is MT-PKDOT with those two parameters changed."""
  variant = _student_setup(tmp_path, method="mt_pkdot:routing=joint,gamma=0")
  changed = _student_setup(tmp_path, routing="joint", gamma=0.0)
  base = _student_setup(tmp_path)
  runs = [_run_shard_map(*setup, 1) for setup in (variant, changed, base)]
  _assert_same_training(runs[:1], runs[1], variant[0], ("loss", "ot", "centroid"))
  assert int(runs[0][1]["routed_teacher"]) == 2  # The joint teacher is the last candidate.
  assert not np.allclose(runs[0][1]["loss"], runs[2][1]["loss"])


def test_stage_task_loss_is_the_global_batch_ccc_with_its_global_gradient():
  """The unimodal, joint and alignment stages' task loss (``objective.task_loss``)."""
  rng = np.random.default_rng(1)
  outputs = rng.normal(size=(16, 2)).astype(np.float32)
  targets = rng.normal(size=(16, 2)).astype(np.float32)
  batch = {"y": targets}

  def reference(x):  # 1 - mean CCC over the whole batch, written out in NumPy.
    mx, my = x.mean(0), targets.mean(0)
    cov = ((x - mx) * (targets - my)).mean(0)
    ccc = 2 * cov / (x.var(0) + targets.var(0) + (mx - my) ** 2)
    return 1 - ccc.mean()

  # Outputs `base * scale` with a replicated parameter `scale`, as a step's model has.
  scale = np.array([0.7, 1.3], np.float32)
  eps = 1e-3
  numeric = np.zeros(2)
  for j in range(2):
    step = np.eye(2)[j] * eps
    numeric[j] = (reference(outputs * (scale + step)) - reference(outputs * (scale - step))) / (
      2 * eps
    )

  mesh = parallel.make_mesh(8)
  spec, replicated = jax.sharding.PartitionSpec(parallel.DATA_AXIS), jax.sharding.PartitionSpec()

  def per_device(scale, x, b):
    # As in the step: each device's gradient of its copy of the loss, then their mean.
    value, grad = jax.value_and_grad(lambda w: objective.task_loss(x * w, b, "regression"))(scale)
    return value, jax.lax.pmean(grad, parallel.DATA_AXIS)

  value, grad = jax.jit(
    jax.shard_map(
      per_device,
      mesh=mesh,
      in_specs=(replicated, spec, spec),
      out_specs=(replicated, replicated),
      check_vma=False,
    )
  )(scale, outputs, batch)
  np.testing.assert_allclose(value, reference(outputs * scale), rtol=1e-5)
  np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-6)


def test_alignment_loss_weights_gradient_and_stage_one_fusion(trained, monkeypatch):
  """``L_SD`` by hand, ``z_J`` trained by the alignment term, the fusion loaded from stage 1."""
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  captured = {}

  def capture(ctx, stage, model, variables, loss_fn, table, *args, **kwargs):
    captured.update(model=model, variables=variables, loss_fn=loss_fn, table=table)
    raise StopIteration

  monkeypatch.setattr(context.Context, "fit", capture)
  with pytest.raises(StopIteration):
    graph.train_stage(ctx, Memo(), "alignment")
  joint = checkpoint.load_stage_output(ctx.workdir, "joint")[0]
  params = captured["variables"]["params"]
  chex.assert_trees_all_equal(params["fusion"], joint["params"]["fusion"])

  model, loss_fn, mods = captured["model"], captured["loss_fn"], ctx.modalities
  idx = ctx.split["train"][:8]
  batch = captured["table"].take(idx)
  key = jax.random.PRNGKey(4)
  mesh = parallel.make_mesh(1)
  spec = jax.sharding.PartitionSpec()

  def evaluate(p):  # One program: the loss, the model's outputs and the alignment gradient.
    loss, (metrics, _) = loss_fn(p, {}, batch, key, None)
    inputs = [batch[m] for m in mods]
    applied = model.apply({"params": p}, inputs, train=True, rngs={"dropout": key})
    # z_J is not stopped: the alignment term's gradient reaches the fusion.
    grads = jax.grad(lambda q: loss_fn(q, {}, batch, key, None)[1][0]["align"])(p)
    return loss, metrics["align"], applied, grads["fusion"]

  evaluate = jax.jit(
    jax.shard_map(evaluate, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
  )
  loss, metric, (outputs, z, adapted, heads), fusion_grads = evaluate(params)
  z, adapted = np.asarray(z, np.float64), np.asarray(adapted, np.float64)

  def ce(logits):
    logits = np.asarray(logits, np.float64)
    logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    return np.mean(logz - logits[np.arange(len(logits)), batch["y"]])

  cos = lambda a: np.sum(a * z, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(z, axis=1)  # noqa: E731
  align = sum(np.mean(1 - cos(adapted[m])) for m in range(len(mods)))
  expected = 0.5 * align + 0.5 * (ce(outputs) + sum(ce(h) for h in heads) / len(mods))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metric, align, rtol=1e-5)
  assert sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(fusion_grads)) > 0


@pytest.mark.fast_compile
def test_the_tnets_are_selected_on_their_own_validation_loss(trained):
  """The joint stage hands on the T-Nets of its lowest validation T-Net loss (MSE here)."""
  config, workdir, _ = trained
  ctx = make_context(config, workdir)
  logs = checkpoint.stage_dir(ctx.workdir, "joint") / "logs" / "metrics.jsonl"
  logged = {
    row["step"]: row["val/tnet_loss"] for row in map(json.loads, logs.open()) if "val/score" in row
  }
  best_step = min(logged, key=logged.get)
  joint, meta = checkpoint.load_stage_output(ctx.workdir, "joint")
  assert meta["parts"]["tnets"]["step"] == best_step
  assert meta["parts"]["tnets"]["value"] == pytest.approx(logged[best_step])

  # The handed-on T-Nets' loss on the validation split, recomputed here in NumPy.
  val = ctx.split["val"]
  tokens = backbones.backbone_tokens(ctx, Memo(), required_by="test")
  hallucinated = joint_stage.joint_model(ctx).apply(
    {"params": joint["params"]}, tokens["video"][val], method=networks.JointTeacher.hallucinate
  )
  real = [tokens[m][val].mean(1) for m in config.privileged]
  # The validation split is one batch here, so the mean over batches is the mean over it.
  assert len(val) < 2 * config.stages.joint.batch_size
  pairs = zip(np.asarray(hallucinated, np.float64), real, strict=True)
  loss = sum(np.mean(np.square(h - r)) for h, r in pairs)
  np.testing.assert_allclose(loss, logged[best_step], rtol=1e-5)


@pytest.mark.fast_compile
def test_with_fine_tuned_backbones_the_whole_joint_model_comes_from_its_best_score_step(tmp_path):
  """A T-Net reads the fine-tuned visual features of its own step: no part selection then.

  The handed-on T-Nets, run on the handed-on visual encoder's features, give the T-Net loss
  logged at the best-score step (recomputed here in NumPy), not that of another step.
  """
  config = smoke_config(tmp_path / "tfds", num_devices=1)
  config.stages.joint.finetune_backbones = True
  ctx = make_context(config, tmp_path / "run")
  for modality in ctx.modalities:
    graph.train_stage(ctx, Memo(), "unimodal", modality)
  graph.train_stage(ctx, Memo(), "joint")
  logs = checkpoint.stage_dir(ctx.workdir, "joint") / "logs" / "metrics.jsonl"
  logged = {
    row["step"]: row["val/tnet_loss"] for row in map(json.loads, logs.open()) if "val/score" in row
  }
  joint, meta = checkpoint.load_stage_output(ctx.workdir, "joint")
  # The T-Nets' own best step is another one here: T-Nets taken from it would show.
  assert min(logged, key=logged.get) != meta["step"]
  assert meta["parts"] == {}

  val = ctx.split["val"]
  columns = ctx.dataset.table.take(val, list(ctx.modalities))
  encoder_variables = [
    {name: tree[f"encoders_{i}"] for name, tree in joint.items() if f"encoders_{i}" in tree}
    for i in range(len(ctx.modalities))
  ]
  tokens = [
    ctx.encoder(m).apply(v, columns[m])
    for v, m in zip(encoder_variables, ctx.modalities, strict=True)
  ]
  hallucinated = joint_stage.joint_model(ctx).apply(
    {"params": joint["params"]}, tokens[0], method=networks.JointTeacher.hallucinate
  )
  assert len(val) < 2 * config.stages.joint.batch_size  # One validation batch.
  pairs = zip(np.asarray(hallucinated, np.float64), tokens[1:], strict=True)
  loss = sum(np.mean(np.square(h - np.asarray(t, np.float64).mean(1))) for h, t in pairs)
  np.testing.assert_allclose(loss, logged[meta["step"]], rtol=1e-5)
  assert meta["metrics"]["tnet_loss"] == pytest.approx(logged[meta["step"]])
