"""Fine-tuning the backbones: with the joint teacher, or the visual one with each student."""

import chex
import jax
import numpy as np
import pytest

from mtpkd_jax.methods import backbones, context, graph, networks, students, unimodal
from mtpkd_jax.methods import joint as joint_stage
from mtpkd_jax.methods.context import Memo
from mtpkd_jax.train import checkpoint
from tests.methods.conftest import make_context, smoke_config

# Training flows, compared with themselves.
pytestmark = [pytest.mark.fast_compile, pytest.mark.slow]


def _distance(a, b):
  leaves = jax.tree.leaves(jax.tree.map(lambda x, y: np.sum((np.asarray(x) - y) ** 2), a, b))
  return float(np.sqrt(sum(leaves)))


def _load(ctx, stage):
  return checkpoint.load_stage_output(ctx.workdir, stage)[0]


def _context(tmp_path, **switches):
  config = smoke_config(tmp_path / "tfds", num_devices=1)
  config.stages.joint.finetune_backbones = switches.get("joint", False)
  config.stages.student.finetune_visual = switches.get("student", False)
  # Large enough that two smoke epochs move the backbones measurably.
  config.stages.joint.backbone_learning_rate = 1e-3
  config.stages.student.backbone_learning_rate = 1e-3
  return make_context(config, tmp_path / "run")


def _with_teachers(ctx):
  """``ctx``, its stage-0 backbones and joint teacher trained."""
  for modality in ctx.modalities:
    graph.train_stage(ctx, Memo(), "unimodal", modality)
  graph.train_stage(ctx, Memo(), "joint")
  return ctx


def _record_fit(monkeypatch) -> dict:
  """What the next ``Context.fit`` starts from: its ``variables`` (copied) and ``columns``."""
  captured, fit = {}, context.Context.fit

  def record(ctx, stage, model, variables, loss_fn, table, *args, **kwargs):
    captured.update(variables=jax.tree.map(np.array, variables), columns=_all(table))
    return fit(ctx, stage, model, variables, loss_fn, table, *args, **kwargs)

  monkeypatch.setattr(context.Context, "fit", record)
  return captured


def _video(ctx, indices):
  return ctx.dataset.table.take(indices, ["video"])["video"]


def _all(table):
  return table.take(np.arange(len(table)))


def _fresh_encoder(ctx, modality):
  return ctx.encoder(modality).init(
    jax.random.PRNGKey(7), ctx.first(ctx.inputs(modality), modality)
  )


def _assert_trained_from(trained, start, fresh):
  """``trained`` moved away from ``start``, and stayed far closer to it than a fresh init."""
  moved = _distance(trained, start)
  assert 0 < moved < 0.5 * _distance(fresh, start)


def test_joint_stage_fine_tunes_every_backbone_and_the_teachers_use_them(tmp_path):
  ctx = _context(tmp_path, joint=True)
  with pytest.raises(FileNotFoundError, match=r"Stage 'joint' needs .*'unimodal_video'"):
    graph.train_stage(ctx, Memo(), "joint")
  _with_teachers(ctx)
  joint = _load(ctx, "joint")
  for i, modality in enumerate(ctx.modalities):
    start = _load(ctx, f"unimodal_{modality}")["params"]["encoder"]
    fresh = _fresh_encoder(ctx, modality)["params"]
    _assert_trained_from(joint["params"][f"encoders_{i}"], start, fresh)
  # The later stages encode with the joint stage's backbones, not stage 0's.
  video = _video(ctx, np.arange(len(ctx.dataset)))
  encoder = ctx.encoder("video")
  expected = encoder.apply({"params": joint["params"]["encoders_0"]}, video)
  np.testing.assert_allclose(backbones.encode(ctx, "video", "test"), expected, rtol=1e-4, atol=1e-5)
  stage0 = encoder.apply({"params": _load(ctx, "unimodal_video")["params"]["encoder"]}, video)
  assert not np.allclose(expected, stage0, atol=1e-4)


def test_student_fine_tunes_its_visual_backbone_on_video_alone(tmp_path, monkeypatch):
  ctx = _with_teachers(_context(tmp_path, student=True))
  captured = _record_fit(monkeypatch)
  graph.train_stage(ctx, Memo(), "student", "pkdot")
  captured = captured["columns"]
  # The student's batches carry the raw video (its backbone trains) and no privileged input.
  assert set(captured) == {"video", "teacher_z", "teacher_out", "y"}
  np.testing.assert_array_equal(captured["video"], _video(ctx, np.arange(len(ctx.dataset))))

  student, joint = _load(ctx, "student_pkdot"), _load(ctx, "joint")
  start = _load(ctx, "unimodal_video")["params"]["encoder"]
  _assert_trained_from(student["params"]["encoder"], start, _fresh_encoder(ctx, "video")["params"])

  # The test-time path uses the student's own backbone: assembled here from the networks.
  test = ctx.split["test"][:8]
  video = _video(ctx, test)
  outputs, _ = students.student_predictor(ctx, "pkdot")(ctx.dataset.table, test)
  tokens = ctx.encoder("video").apply({"params": student["params"]["encoder"]}, video)
  hallucinated = joint_stage.joint_model(ctx).apply(
    {"params": joint["params"]}, tokens, method=networks.JointTeacher.hallucinate
  )
  expected = networks.Student(ctx.num_outputs).apply(
    {"params": {"fusion": student["params"]["fusion"]}}, tokens, lambda _: hallucinated
  )[0]
  np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_the_visual_network_student_is_visual_only_plus_its_distillation(tmp_path, monkeypatch):
  ctx = _context(tmp_path)
  ctx.config.stages.student.network = "visual"
  _with_teachers(ctx)
  captured = _record_fit(monkeypatch)
  graph.train_stage(ctx, Memo(), "student", "pkd")
  # It starts where visual-only started, reads the raw video and no privileged input.
  visual_only = unimodal.unimodal_model(ctx, "video")
  chex.assert_trees_all_equal(
    captured["variables"], unimodal.initial_variables(ctx, "video", visual_only)
  )
  assert set(captured["columns"]) == {"video", "teacher_z", "teacher_out", "y"}
  # Trained, it is a visual-only network: the unimodal model predicts with its variables.
  student = _load(ctx, "student_pkd")
  test = ctx.split["test"][:8]
  outputs, z = students.student_predictor(ctx, "pkd")(ctx.dataset.table, test)
  expected, tokens = visual_only.apply(student, _video(ctx, test))
  np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(z, tokens.mean(axis=1), rtol=1e-5, atol=1e-6)
  assert _distance(student["params"], captured["variables"]["params"]) > 0
