"""Trains the configured methods side by side over runs, evaluates each once on test.

A run is one subject-independent fold with one seed: run ``r`` uses fold
``r mod num_folds`` and seed ``config.seed + r``. Within a run, the stages the methods
share (backbones, joint teacher, alignment) are trained once; each student is trained
after them; model selection uses the validation subjects inside the training subjects;
the test subjects are evaluated once per method at the end. Rerunning with the same
workdir resumes every stage from its checkpoints.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from mtpkd_jax import ot
from mtpkd_jax.comparison import plots, report
from mtpkd_jax.data import pipeline, splits
from mtpkd_jax.methods import evaluation, registry, stages
from mtpkd_jax.ot import divergence, similarity
from mtpkd_jax.train import parallel


def _train_and_evaluate(ctx: stages.Context, methods) -> tuple[dict, dict]:
  """Trains what ``methods`` need; returns test metrics per method and plot inputs."""
  visual, data, test = ctx.config.visual, ctx.data, ctx.split["test"]
  needed = stages.plan(methods, ctx.modalities)
  for modality in needed.unimodal:
    stages.train_unimodal(ctx, modality)
  if needed.joint:
    stages.train_joint(ctx)
  if needed.alignment:
    stages.train_alignment(ctx)
  for name in methods:
    if registry.get_method(name, visual).kind == "student":
      stages.train_student(ctx, name)

  results, student_z = {}, {}
  for name in methods:
    method = registry.get_method(name, visual)
    if method.kind == "unimodal":
      outputs = stages.unimodal_predictor(ctx, method.modality)(data[method.modality][test])
    elif method.kind == "teacher":
      outputs = stages.teacher_targets(ctx, "joint", "evaluation")["teacher_out"][test, 0]
    else:
      outputs, student_z[name] = stages.student_predictor(ctx, name)(data[visual][test])
    metrics = evaluation.scores(outputs, ctx.targets(test), ctx.task)
    results[name] = {k: metrics[k] for k in evaluation.METRICS[ctx.task]}
  artifacts = {}
  if student_z:
    z_teacher = stages.teacher_targets(ctx, "joint", "evaluation")["teacher_z"][test, 0]
    artifacts = {"z_teacher": z_teacher, "student_z": student_z}
  return results, artifacts


def _plot_run(run_dir: Path, artifacts: dict, config: ml_collections.ConfigDict, out_dir: Path):
  """Learning curves of every stage; similarity matrices and a transport plan."""
  logs = {
    d.name: plots.read_jsonl(d / "logs" / "metrics.jsonl")
    for d in sorted(run_dir.iterdir())
    if (d / "logs").is_dir()
  }
  paths = {"learning_curves": plots.learning_curves(logs, out_dir / "learning_curves.png")}
  if not artifacts:
    return paths
  name = next(
    (m for m in ("mt_pkdot", "pkdot") if m in artifacts["student_z"]),
    next(iter(artifacts["student_z"])),
  )
  size = min(config.plot_batch_size, len(artifacts["z_teacher"]))
  s_t = similarity.cosine_similarity(artifacts["z_teacher"][:size])
  s_s = similarity.cosine_similarity(artifacts["student_z"][name][:size])
  paths["similarity"] = plots.similarity_matrices(
    np.asarray(s_t),
    np.asarray(s_s),
    out_dir / "similarity.png",
    title=f"Joint teacher vs {name} student, test batch of {size}",
  )
  params = config.method_params.get(name, config.method_params.mt_pkdot)
  k = min(params.k, size - 1)
  t_pts, s_pts = similarity.select_anchors(
    similarity.shift_nonnegative(s_t), similarity.shift_nonnegative(s_s), params.anchors, k
  )
  cost = divergence.half_sq_euclidean(s_pts[None], t_pts[None])
  # The plan at the method's target epsilon, solved to convergence.
  schedule = ot.Tolerance(epsilon=registry.schedule_of(params).target_epsilon)
  out = ot.solve(cost, schedule=schedule)
  paths["transport_plan"] = plots.transport_plan(
    np.asarray(ot.transport_plan(cost, out))[0],
    out_dir / "transport_plan.png",
    title=f"{name}: transport plan, student rows -> teacher rows (eps={schedule.epsilon:g})",
  )
  return paths


def _fold_and_seed(config: ml_collections.ConfigDict, run_index: int) -> tuple[int, int]:
  return run_index % config.num_folds, config.seed + run_index


def make_context(
  config: ml_collections.ConfigDict,
  data: dict[str, np.ndarray],
  run_index: int,
  workdir: Path,
  mesh: jax.sharding.Mesh,
) -> stages.Context:
  """Run ``run_index``: fold ``run_index mod num_folds``, seed ``config.seed + run_index``."""
  info = pipeline.dataset_info(config.dataset)
  task = evaluation.task_of(info["task"])
  fold, seed = _fold_and_seed(config, run_index)
  split = splits.subject_folds(
    data["subject"], config.num_folds, fold, config.val_subjects, seed=config.split_seed
  )
  return stages.Context(
    config=config,
    data=data,
    split=split,
    workdir=Path(workdir) / f"run{run_index}_fold{fold}_seed{seed}",
    seed=seed,
    task=task,
    num_outputs=info["num_classes"] if task == "classification" else 2,
    mesh=mesh,
  )


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  """Runs the comparison of ``config.methods`` and writes its report under ``workdir``.

  Args:
    config: an experiment config (see ``experiments/configs/``).
    workdir: where checkpoints, logs, tables and plots go; rerun to resume.

  Returns:
    The results dict (see :func:`mtpkd_jax.comparison.report.summarize`), with the paths of
    the written tables and plots under ``files``.
  """
  start = time.perf_counter()
  workdir = Path(workdir)
  for name in config.methods:
    registry.get_method(name, config.visual)  # Fail on a typo before any training.
  data = pipeline.load(config.dataset, config.data_dir)
  mesh = parallel.make_mesh(config.num_devices)
  contexts = [make_context(config, data, r, workdir, mesh) for r in range(config.num_runs)]
  task = contexts[0].task
  results = {
    "dataset": config.dataset,
    "task": task,
    "metrics": list(evaluation.METRICS[task]),
    "baseline": config.baseline,
    "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    "runs": [],
  }
  for r, ctx in enumerate(contexts):
    run_start = time.perf_counter()
    (fold, seed), run_dir = _fold_and_seed(config, r), ctx.workdir
    logging.info(
      "Run %d: fold %d, seed %d, %s", r, fold, seed, {k: len(v) for k, v in ctx.split.items()}
    )
    methods, artifacts = _train_and_evaluate(ctx, list(config.methods))
    if r == 0:
      results["plots"] = {
        k: str(v) for k, v in _plot_run(run_dir, artifacts, config, workdir).items()
      }
    results["runs"].append(
      {
        "run": r,
        "fold": fold,
        "seed": seed,
        "methods": methods,
        "wall_time_s": time.perf_counter() - run_start,
      }
    )
  results["wall_time_s"] = time.perf_counter() - start
  results["files"] = {k: str(v) for k, v in report.write_reports(results, workdir).items()}
  return results
