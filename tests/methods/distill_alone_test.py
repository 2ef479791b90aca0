"""Distillation alone teaches: with the task weight 0, each family's term moves the student.

Each student variant ``<method>:alpha=0`` learns from its distillation term alone (for PKDOT
and MT-PKDOT ``alpha`` weighs the task term too). The control ``pkd:alpha=0,beta=0`` has no
loss at all, so Adam leaves it at its initial parameters: it is what a student whose term
sends no gradient ends as. Every check compares a student with that control on examples the
student was not selected on where it can (validation), with NumPy references written here.

The frozen visual tokens carry the label linearly, so a linear probe on the *control's*
embedding is already far above chance (~0.79 here): the probe shows that distillation does not
destroy what the tokens hold, while what separates a distilled student from the control is
what its term optimises: agreement with the teacher's embedding (feature KD), the teacher's
accuracy on the training examples (logit KD), the structural OT loss on held-out batches (OT,
with `most` anchors).
docs/results/distillation_diagnostics.md reads these checks on the main job's data.
"""

import jax
import numpy as np
import pytest

from experiments.configs import features as features_config
from mtpkd_jax.comparison import runner
from mtpkd_jax.methods import registry, students
from mtpkd_jax.methods.context import Memo
from mtpkd_jax.train import parallel
from tests import cpu_env
from tests.features_files import write_features

# Training flows, compared with each other.
pytestmark = [pytest.mark.fast_compile, pytest.mark.slow]

CONTROL = "pkd:alpha=0,beta=0"
FEATURE_KD, LOGIT_KD = "pkd:alpha=0", "logit_kd:alpha=0"
# Anchors on the teacher's most similar columns: with the default `least` anchors the loss does
# not tell an embedding aligned with the teacher's from noise (the last test), so a student left
# at its initial parameters can score as well as a distilled one.
STRUCTURAL = ("pkdot:alpha=0,anchors=most", "mt_pkdot:alpha=0,anchors=most")
STUDENTS = (FEATURE_KD, LOGIT_KD, *STRUCTURAL, CONTROL)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """The shared stages and every student of :data:`STUDENTS`, trained once; run 0's context.

  Returns ``(ctx, config, outputs)``, ``outputs[name] = (outputs [N, C], z_S [N, d])`` for every
  example, and the teacher targets ``"joint"`` and ``"aligned"`` under ``outputs["targets"]``.
  """
  root = tmp_path_factory.mktemp("distill_alone")
  # 480 examples of 12 subjects: `eda` (privileged) carries the label strongly, `face` (visual)
  # weakly (tests/features_files.py); ~250 training and ~60 validation examples in fold 0.
  write_features(root / "f.npz", num_subjects=12, per_subject=40)
  config = features_config.get_config("smoke")
  config.features_path = str(root / "f.npz")
  config.data_dir = str(root / "tfds")
  config.visual, config.privileged = "face", ("eda",)
  config.num_devices = 1
  config.methods = ("joint_teacher", *STUDENTS)
  config.baseline = CONTROL
  # 120 steps of 8 at a high rate: every term acts within the first epoch, which matters because
  # a stage keeps its best validation-accuracy epoch, for an `alpha=0` student (untrained head)
  # any epoch, often the first.
  config.stages.student.epochs = 4
  config.stages.student.learning_rate = 5e-3
  cpu_env.set_fast_compile(True)
  runner.run(config, root / "work")
  ctx = runner.make_context(
    config, runner.open_dataset(config), 0, root / "work", parallel.make_mesh(1)
  )
  everything = np.arange(len(ctx.dataset))
  outputs = {m: students.student_predictor(ctx, m)(ctx.dataset.table, everything) for m in STUDENTS}
  memo = Memo()
  outputs["targets"] = {
    source: students.teacher_targets(ctx, memo, source, required_by="distill_alone_test")
    for source in ("joint", "aligned")
  }
  return ctx, config, outputs


def _probe_accuracy(z, y, train, val, ridge=1e-2):
  """A ridge least-squares classifier on standardised ``z[train]``; its accuracy on ``val``."""
  mean, std = z[train].mean(0), z[train].std(0) + 1e-6

  def features(rows):
    return np.c_[(z[rows] - mean) / std, np.ones(len(rows))]

  x = features(train)
  onehot = np.eye(int(y.max()) + 1)[y[train]]
  w = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ onehot)
  return float(np.mean((features(val) @ w).argmax(1) == y[val]))


def _mean_cosine(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return float(np.mean(np.sum(a * b, axis=1)))


def _labels_and_split(ctx):
  return np.asarray(ctx.dataset.y), ctx.split["train"], ctx.split["val"]


@pytest.mark.parametrize("name", [FEATURE_KD, LOGIT_KD, *STRUCTURAL])
def test_a_linear_probe_on_the_distilled_embedding_is_far_above_chance(run, name):
  ctx, _, outputs = run
  y, train, val = _labels_and_split(ctx)
  teacher_z = outputs["targets"]["joint"]["teacher_z"][:, -1]
  # The threshold is met by the teacher's own embedding (~1.0), so it is reachable.
  assert _probe_accuracy(teacher_z, y, train, val) >= 0.9
  assert _probe_accuracy(outputs[name][1], y, train, val) >= 0.65


def test_feature_kd_alone_aligns_the_student_embedding_with_the_teachers(run):
  ctx, _, outputs = run
  _, _, val = _labels_and_split(ctx)
  teacher_z = outputs["targets"]["joint"]["teacher_z"][val, -1]
  distilled = _mean_cosine(outputs[FEATURE_KD][1][val], teacher_z)
  control = _mean_cosine(outputs[CONTROL][1][val], teacher_z)
  assert abs(control) < 0.2  # A student at its initial parameters is unrelated to z_J.
  assert distilled > control + 0.3


def test_logit_kd_alone_reaches_near_the_teachers_training_accuracy(run):
  ctx, _, outputs = run
  y, train, val = _labels_and_split(ctx)
  teacher = outputs["targets"]["joint"]["teacher_out"][:, -1].argmax(-1)
  teacher_acc = float(np.mean(teacher[train] == y[train]))
  student = outputs[LOGIT_KD][0].argmax(-1)
  control = outputs[CONTROL][0].argmax(-1)
  assert teacher_acc >= 0.85
  # Near the teacher, within the visual modality's own limit (face alone: ~0.77, Bayes).
  assert np.mean(student[train] == y[train]) >= teacher_acc - 0.25
  assert np.mean(student[val] == y[val]) >= 0.65
  # The control's untrained head agrees with the teacher no better than chance.
  assert (
    np.mean(control[train] == teacher[train]) < 0.65 < np.mean(student[train] == teacher[train])
  )


def _term_on_validation(ctx, config, name, outputs, targets, val, num_batches=64):
  """The method's weighted distillation terms, mean over random validation batches.

  The batches have the student stage's size (the OT anchors are chosen within a batch), drawn
  with a fixed seed, so every student is scored on the same batches.
  """
  method, params = registry.get_method(name), registry.method_params(config, name)
  size = config.stages.student.batch_size

  @jax.jit
  def term(outputs_s, z_s, batch):
    terms, _ = method.distill(params, z_s, outputs_s, batch, ctx.task)
    return sum(getattr(params, method.weights[t]) * v for t, v in terms.items())

  rng = np.random.default_rng(0)
  values = []
  for _ in range(num_batches):
    rows = rng.choice(val, size, replace=False)
    batch = {k: targets[k][rows] for k in ("teacher_z", "teacher_out")}
    batch["y"] = np.asarray(ctx.dataset.y)[rows]
    values.append(float(term(outputs[0][rows], outputs[1][rows], batch)))
  return float(np.mean(values))


@pytest.mark.parametrize("name", STRUCTURAL)
def test_structural_ot_alone_lowers_its_loss_on_held_out_batches(run, name):
  ctx, config, outputs = run
  _, _, val = _labels_and_split(ctx)
  targets = outputs["targets"][registry.get_method(name).teacher]
  distilled, control = (
    _term_on_validation(ctx, config, name, outputs[m], targets, val) for m in (name, CONTROL)
  )
  assert distilled < 0.8 * control


@pytest.mark.xfail(
  strict=True,
  reason="The default `least` anchors compare only each row's least similar columns, which a "
  "random embedding matches as well as one aligned with the teacher "
  "(docs/results/distillation_diagnostics.md, b).",
)
def test_the_default_structural_loss_prefers_an_aligned_embedding_to_noise(run):
  ctx, config, outputs = run
  _, _, val = _labels_and_split(ctx)
  targets = outputs["targets"]["joint"]
  aligned = outputs[FEATURE_KD]  # Its embedding matches z_J's direction (cosine > 0.3, above).
  noise = (aligned[0], np.random.default_rng(0).normal(size=aligned[1].shape).astype(np.float32))
  loss = {
    k: _term_on_validation(ctx, config, "pkdot:alpha=0", v, targets, val)
    for k, v in (("aligned", aligned), ("noise", noise))
  }
  assert loss["aligned"] < 0.8 * loss["noise"]
