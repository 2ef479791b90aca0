"""CMKT: its stages, its loss terms, its test-time path, and data parallelism."""

import dataclasses

import chex
import jax
import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import features as features_config
from experiments.configs import synthetic_cmkt
from mtpkd_jax.comparison import predict, runner
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import cmkt, graph, registry
from mtpkd_jax.methods.context import Memo
from mtpkd_jax.train import checkpoint, parallel
from mtpkd_jax.train import state as state_lib
from mtpkd_jax.train import step as step_lib
from mtpkd_jax.train import variables as variables_lib
from tests import cpu_env

METHODS = ("audio_only", "cmkt_translation", "cmkt_alignment", "cmkt", "cmkt_ot")
LENGTH = 6


def _smoke_config(tmp_path, **overrides) -> ml_collections.ConfigDict:
  """The synthetic CMKT smoke config (``sentiment_tiny``: text strong, audio weak)."""
  config = synthetic_cmkt.get_config("sentiment,smoke")
  config.data_dir = str(tmp_path / "tfds")
  config.num_devices = 1
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """``(config, workdir, results)`` of the smoke CMKT comparison."""
  tmp_path = tmp_path_factory.mktemp("cmkt")
  config = _smoke_config(tmp_path)
  config.methods = ("audio_only", "cmkt", "cmkt:head=finetune")
  config.method_params.cmkt.align_dim = 2  # Deep CCA on 8 examples a batch: 2 directions.
  workdir = tmp_path / "comparison"
  cpu_env.set_fast_compile(True)  # A training flow; the tests that use it choose their own mode.
  return config, workdir, runner.run(config, workdir)


def _write_sentiment_features(path, n=48, seed=0):
  """A features file: word-aligned ``text`` (strong) and ``audio`` (weak), a score."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, LENGTH + 1, size=n)
  mask = np.arange(LENGTH)[None] < lengths[:, None]
  polarity = rng.normal(size=(n, LENGTH)) * mask
  score = np.clip(3 * np.tanh(polarity.sum(1) / np.sqrt(lengths)), -3, 3)
  text = polarity[..., None] * rng.normal(size=(1, 1, 5)) + 0.2 * rng.normal(size=(n, LENGTH, 5))
  audio = 0.5 * polarity[..., None] * rng.normal(size=(1, 1, 3)) + rng.normal(size=(n, LENGTH, 3))
  np.savez(
    path,
    x_text=np.where(mask[..., None], text, 0).astype(np.float32),
    mask_text=mask,
    x_audio=np.where(mask[..., None], audio, 0).astype(np.float32),
    mask_audio=mask,
    y=score.astype(np.float32),
    target_names=np.array(["sentiment"]),
    subject=np.repeat(np.arange(6), n // 6),
  )


@pytest.mark.slow
@pytest.mark.fast_compile
def test_cmkt_runs_on_a_features_file_with_named_strong_and_weak_modalities(tmp_path):
  _write_sentiment_features(tmp_path / "sentiment.npz")
  config = features_config.get_config("smoke")
  config.update(
    features_path=str(tmp_path / "sentiment.npz"),
    data_dir=str(tmp_path / "tfds"),
    visual="audio",
    privileged=("text",),
    strong="text",
    methods=("audio_only", "cmkt_ot"),
    baseline="audio_only",
    metrics="sentiment",
    num_devices=1,
  )
  config.stages.unimodal.epochs = config.stages.cmkt.epochs = 1
  results = runner.run(config, tmp_path / "work")
  values = results["runs"][0]["methods"]["cmkt_ot"]
  assert set(values) == {"acc_2", "f1_2", "mae", "corr", "acc_7"}
  assert all(np.isfinite(v) for v in values.values())


def _context(config, workdir):
  return runner.make_context(config, runner.open_dataset(config), 0, workdir, parallel.make_mesh(1))


@pytest.mark.slow
def test_the_comparison_reports_mosi_metrics_for_every_method(trained):
  config, _, results = trained
  assert results["metrics"] == ["acc_2", "f1_2", "mae", "corr", "acc_7"]
  assert results["dataset"].startswith("synthetic_affect/sentiment_tiny")
  for name in config.methods:
    values = results["runs"][0]["methods"][name]
    assert set(values) == set(results["metrics"])
    assert all(np.isfinite(v) for v in values.values()), (name, values)


@pytest.mark.slow
@pytest.mark.fast_compile
def test_training_reduces_the_translation_and_alignment_losses(trained):
  """The stage's step on the smoke data: both terms fall on the training examples."""
  config, workdir, _ = trained
  ctx = _context(config, workdir)
  cfg = registry.method_params(config, "cmkt")
  train = ctx.split["train"]
  targets = cmkt.stage_targets(ctx, Memo(), cfg, "test")
  columns = ctx.inputs("audio").take(train)
  batch = {**columns, **{k: v[train] for k, v in targets.items()}, "y": ctx.dataset.y[train]}
  model = cmkt.weak_model(ctx, cfg)

  def terms(variables):
    parts = model.apply(variables, ctx.model_input(batch, "audio"))
    return cmkt.cmkt_terms(cfg, registry.get_method("cmkt"), *parts, batch, ctx.task)[0]

  initial, params, _ = _run(ctx, "cmkt", [batch] * 20, 1, optax.adam(3e-3))
  before = terms(variables_lib.variables(initial.params, initial.batch_stats))
  after = terms(variables_lib.variables(params, initial.batch_stats))
  for term in ("translation", "alignment", "task"):
    assert after[term] < before[term] - 0.05 * abs(before[term]), (term, before, after)


@pytest.mark.slow
@pytest.mark.fast_compile
def test_the_weak_model_predicts_from_the_weak_modality_alone(trained):
  config, workdir, results = trained
  ctx = _context(config, workdir)
  test = ctx.split["test"]
  predictor = cmkt.cmkt_predictor(ctx, "cmkt")
  outputs, z_w = predictor(ctx.dataset.table, test)
  # The same predictions from a table whose strong modality is NaN, and from one without it.
  columns = ctx.dataset.table.take(np.arange(len(ctx.dataset)))
  poisoned = {**columns, "text": np.full_like(columns["text"], np.nan)}
  for table in (
    table_lib.ArrayTable(poisoned),
    table_lib.ArrayTable({k: columns[k] for k in ("audio", "mask_audio")}),
    table_lib.ArrayTable({**columns, "mask_text": np.zeros_like(columns["mask_text"])}),
  ):
    again, z_again = predictor(table, test)
    np.testing.assert_array_equal(again, outputs)
    np.testing.assert_array_equal(z_again, z_w)
  # And they are the comparison's test outputs.
  saved = np.load(ctx.workdir / "test_outputs.npz")
  np.testing.assert_array_equal(saved["cmkt"], outputs)
  assert z_w.shape == (len(test), config.embed_dim)


@pytest.mark.slow
@pytest.mark.fast_compile
def test_predict_serves_a_cmkt_method_from_a_file_of_the_weak_modality(trained, tmp_path):
  config, workdir, _ = trained
  ctx = _context(config, workdir)
  columns = ctx.dataset.table.take(np.arange(len(ctx.dataset)))
  np.savez(tmp_path / "new.npz", x_audio=columns["audio"], mask_audio=columns["mask_audio"])
  written = predict.predict_file(workdir, "cmkt", tmp_path / "new.npz", tmp_path / "out.npz")
  expected, _ = cmkt.cmkt_predictor(ctx, "cmkt")(ctx.dataset.table)
  np.testing.assert_allclose(written["outputs"], expected, rtol=1e-6)


@pytest.mark.slow
def test_a_frozen_head_stays_the_strong_models_head_and_a_finetuned_one_moves(trained):
  config, workdir, _ = trained
  run_dir = _context(config, workdir).workdir
  strong, _ = checkpoint.load_stage_output(run_dir, "unimodal_text")
  frozen, _ = checkpoint.load_stage_output(run_dir, "cmkt_cmkt")
  finetuned, _ = checkpoint.load_stage_output(run_dir, "cmkt_cmkt:head=finetune")
  chex.assert_trees_all_equal(frozen["params"]["head"], strong["params"]["head"])
  moved = jax.tree.map(
    lambda a, b: not np.allclose(a, b), finetuned["params"]["head"], strong["params"]["head"]
  )
  assert all(jax.tree.leaves(moved))


def test_the_plan_trains_the_strong_model_and_no_mtpkdot_stage():
  needed = graph.plan(["audio_only", "cmkt", "cmkt_ot"], graph.Roles(("audio", "text"), "text"))
  assert [s.name for s in needed] == [
    "unimodal_audio",
    "unimodal_text",
    "cmkt_cmkt",
    "cmkt_cmkt_ot",
  ]
  assert needed[2].needs == ("unimodal_text",)
  both = graph.plan(["cmkt", "pkdot"], graph.Roles(("audio", "text", "visual"), "visual"))
  # Stages of one kind come in the order the methods first need them: CMKT's strong model.
  assert [s.name for s in both] == [
    "unimodal_visual",
    "unimodal_audio",
    "unimodal_text",
    "joint",
    "student_pkdot",
    "cmkt_cmkt",
  ]


def test_each_cmkt_method_weighs_its_own_terms_from_one_parameter_set(tmp_path):
  config = _smoke_config(tmp_path)
  weights = {name: registry.get_method(name).weights for name in METHODS[1:]}
  assert weights["cmkt_translation"] == {"task": "task_weight", "translation": "lambda_tr"}
  assert weights["cmkt_alignment"] == {"task": "task_weight", "alignment": "lambda_al"}
  assert set(weights["cmkt"]) == {"task", "translation", "alignment"}
  assert set(weights["cmkt_ot"]) == {"task", "translation", "alignment", "ot"}
  for name in METHODS[1:]:
    assert dataclasses.asdict(registry.method_params(config, name)) == (
      config.method_params.cmkt.to_dict()
    )
  assert registry.method_params(config, "cmkt_alignment:alignment=cosine").alignment == "cosine"
  with pytest.raises(ValueError, match="alignment must be one of"):
    registry.method_params(config, "cmkt:alignment=pearson")


def test_a_strong_modality_that_is_not_privileged_is_refused(tmp_path):
  config = _smoke_config(tmp_path, strong="audio")
  with pytest.raises(ValueError, match="`config.strong` is 'audio'"):
    runner.open_dataset(config)


def test_translation_needs_word_aligned_sequences(tmp_path):
  config = _smoke_config(tmp_path)
  cfg = registry.method_params(config, "cmkt")
  batch = {
    "y": np.zeros((4, 1), np.float32),
    cmkt.STRONG_SEQUENCE: np.zeros((4, 5, 8), np.float32),
    cmkt.STRONG_MASK: np.ones((4, 5), bool),
    cmkt.STRONG_Z: np.zeros((4, 8), np.float32),
    cmkt.STRONG_ALIGNED: np.zeros((4, 2), np.float32),
  }
  with pytest.raises(ValueError, match="word-aligned.*6 steps and E_s 5"):
    cmkt.cmkt_terms(
      cfg,
      registry.get_method("cmkt"),
      np.zeros((4, 1), np.float32),
      np.zeros((4, 8), np.float32),
      np.zeros((4, 2), np.float32),
      np.zeros((4, 6, 8), np.float32),
      np.ones((4, 6), bool),
      batch,
      "regression",
    )


def test_principal_projection_against_numpy_pca():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(40, 6)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
  train = np.arange(30)
  projected = cmkt.principal_projection(z, train, 2)
  centred = z - z[train].mean(0)
  values, vectors = np.linalg.eigh(np.cov(centred[train].T))
  top = vectors[:, np.argsort(values)[::-1][:2]]
  reference = centred @ top
  # Principal directions are defined up to sign.
  np.testing.assert_allclose(np.abs(projected), np.abs(reference), rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="align_dim"):
    cmkt.principal_projection(z, train, 7)


def _run(ctx, method, batches, devices, tx=None):
  cfg = registry.method_params(ctx.config, method)
  model = cmkt.weak_model(ctx, cfg)
  variables = model.init(
    jax.random.PRNGKey(0), {"x": batches[0]["audio"], "mask": batches[0]["mask_audio"]}
  )
  # SGD by default: see `stages_test.py` (Adam turns float noise in zero gradients into steps).
  initial = state_lib.create_train_state(model.apply, variables, tx or optax.sgd(0.3))
  mesh = parallel.make_mesh(devices)
  step = parallel.data_parallel(
    step_lib.make_train_step(cmkt.cmkt_loss(ctx, method, model)), mesh, donate_state=False
  )
  train_state = parallel.replicate_on_mesh(initial, mesh)
  for batch in batches:
    train_state, metrics = step(
      train_state, parallel.shard_batch(batch, mesh), jax.random.PRNGKey(1), None
    )
  return initial, train_state.params, metrics


@pytest.mark.slow
@pytest.mark.fast_compile
@pytest.mark.parametrize("method", ["cmkt_ot"])
def test_the_cmkt_step_is_the_same_on_one_and_four_devices(tmp_path, method):
  """Deep CCA, the OT term and ``1 - CCC`` are global-batch statistics: 4 devices equal 1."""
  config = _smoke_config(tmp_path)
  config.dropout_rate = 0.0
  config.encoders_by_kind.sequence.kwargs.dropout_rate = 0.0
  ctx = _context(config, tmp_path / "work")
  rng = np.random.default_rng(0)
  n, d, k = 8, config.embed_dim, config.method_params.cmkt.align_dim
  batches = []
  for _ in range(2):
    mask = np.arange(LENGTH)[None] < rng.integers(1, LENGTH + 1, size=n)[:, None]
    batches.append(
      {
        "audio": rng.normal(size=(n, LENGTH, 8)).astype(np.float32),
        "mask_audio": mask,
        cmkt.STRONG_SEQUENCE: (rng.normal(size=(n, LENGTH, d)) * mask[..., None]).astype(
          np.float32
        ),
        cmkt.STRONG_MASK: mask,
        cmkt.STRONG_Z: rng.normal(size=(n, d)).astype(np.float32),
        cmkt.STRONG_ALIGNED: rng.normal(size=(n, k)).astype(np.float32),
        "y": rng.uniform(-3, 3, size=(n, 1)).astype(np.float32),
      }
    )
  initial, single, metrics = _run(ctx, method, batches, 1)
  _, sharded, sharded_metrics = _run(ctx, method, batches, 4)
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), single, initial.params)
  assert any(jax.tree.leaves(moved))
  chex.assert_trees_all_close(sharded, single, rtol=1e-4, atol=1e-5)
  for name in (
    "loss",
    "task",
    "translation",
    "alignment",
    *(["ot"] if method == "cmkt_ot" else []),
  ):
    np.testing.assert_allclose(sharded_metrics[name], metrics[name], rtol=1e-4, atol=1e-6)


def test_the_synthetic_configs_pick_their_task_and_weak_modality():
  binary = synthetic_cmkt.get_config("binary,visual,smoke")
  assert binary.dataset_options.classes == ("negative", "non_negative")
  assert (binary.visual, binary.strong, binary.metrics) == ("visual", "text", "default")
  full = synthetic_cmkt.get_config("7class")
  assert full.dataset == "synthetic_affect/sentiment_7class" and full.baseline == "audio_only"
  with pytest.raises(ValueError, match="no smoke run"):
    synthetic_cmkt.get_config("7class,smoke")
