"""Trains the configured methods side by side over runs, evaluates each once on test.

A run is one subject-independent fold with one seed: run ``r`` uses fold
``r mod num_folds`` and seed ``config.seed + r``. Within a run, the stages the methods
share (backbones, joint teacher, alignment) are trained once; each student is trained
after them; model selection uses the validation subjects inside the training subjects;
the test subjects are evaluated once per method at the end. A method tuned on validation
(``config.tune``, :mod:`~mtpkd_jax.comparison.tuning`) trains each of its candidates and
reports, run by run, the one its validation score picks. Rerunning with the same workdir
resumes every stage from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from mtpkd_jax import ot
from mtpkd_jax.comparison import environment, plots, report, settings, tuning
from mtpkd_jax.comparison import workdir as workdir_lib
from mtpkd_jax.data import pipeline, splits
from mtpkd_jax.data.schema import SPLITS
from mtpkd_jax.methods import cmkt, context, evaluation, graph, params, registry, students, unimodal
from mtpkd_jax.ot import similarity
from mtpkd_jax.train import checkpoint, distributed, parallel


def _train_and_evaluate(ctx: context.Context, methods) -> tuple[dict, dict]:
  """Trains what ``methods`` need; returns test metrics per method and plot inputs.

  The stages share one :class:`~mtpkd_jax.methods.context.Memo`, for this run alone. The
  test outputs of every method are also saved to ``<run>/test_outputs.npz`` (one array
  per method, and the test ``indices``).
  """
  memo = context.Memo()
  visual, table, test = ctx.config.visual, ctx.dataset.table, ctx.split["test"]
  graph.train(ctx, memo, methods)
  score = _test_scorer(ctx.config, ctx.dataset, test)

  results, student_z, test_outputs = {}, {}, {"indices": test}
  reported = evaluation.metric_names(ctx.schema.task, ctx.config.metrics)
  for name in methods:
    method = registry.get_method(name, visual)
    if method.kind == "unimodal":
      outputs = unimodal.unimodal_predictor(ctx, method.modality)(table, test)
    elif method.kind == "cmkt":
      outputs, _ = cmkt.cmkt_predictor(ctx, name)(table, test)
    elif method.kind == "teacher":
      teacher = students.teacher_targets(ctx, memo, "joint", "evaluation")
      outputs = teacher["teacher_out"][test, 0]
    else:
      outputs, student_z[name] = students.student_predictor(ctx, name)(table, test)
    test_outputs[name] = outputs
    metrics = score(outputs)
    results[name] = {k: metrics[k] for k in reported}
  if distributed.is_main():
    np.savez(ctx.workdir / "test_outputs.npz", **test_outputs)
  artifacts = {}
  if student_z:
    z_teacher = students.teacher_targets(ctx, memo, "joint", "evaluation")["teacher_z"][test, 0]
    artifacts = {"z_teacher": z_teacher, "student_z": student_z}
  return results, artifacts


def _validation_scores(ctx: context.Context, names) -> dict[str, float]:
  """``{name: score}``: the validation score each method's stage selected its output on."""
  scores = {}
  for name in names:
    method = registry.get_method(name, ctx.config.visual)
    stage = context.Stage(graph.TRAINED_BY[method.kind], name).name
    _, meta = checkpoint.load_stage_output(ctx.workdir, stage)
    scores[name] = meta["metrics"]["score"]
  return scores


def _test_scorer(config: ml_collections.ConfigDict, dataset: pipeline.Dataset, test: np.ndarray):
  """``score(outputs)``: the metrics of the ``test`` examples' outputs, by ``config.scoring``."""
  task = dataset.schema.task
  if config.scoring == "clip":
    return lambda outputs: evaluation.scores(outputs, dataset.y[test], task, config.metrics)
  frames = dataset.extra.take(test, evaluation.FRAME_KEYS)
  return lambda outputs: evaluation.frame_scores(outputs, frames, dataset.subject[test], task)


def _check_scoring(config: ml_collections.ConfigDict, dataset: pipeline.Dataset) -> None:
  if config.scoring not in evaluation.SCORINGS:
    raise ValueError(
      f"{dataset.description}: `config.scoring` must be one of {list(evaluation.SCORINGS)}, "
      f"got {config.scoring!r}."
    )
  if config.scoring != "frame":
    return
  if config.metrics != "default":
    raise ValueError(
      f"{dataset.description}: `config.scoring`='frame' gives the CCC per target; "
      f"`config.metrics` must be 'default', not {config.metrics!r}."
    )
  missing = [k for k in evaluation.FRAME_KEYS if k not in dataset.extra.keys]
  missing += ["subject"] if dataset.subject is None else []
  if missing or dataset.schema.task.kind != "regression":
    raise ValueError(
      f"{dataset.description}: `config.scoring`='frame' scores a regression per frame from "
      f"the stored {[*evaluation.FRAME_KEYS, 'subject']} (subjects are the sequences); "
      f"this {dataset.schema.task.kind} dataset has no {missing or 'regression task'}. "
      "Use 'clip'."
    )


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
  ot_params = registry.method_params(config, name)
  if not isinstance(ot_params, params.StructuralOT):  # No structural OT: MT-PKDOT's entries.
    entry = config.method_params.mt_pkdot.to_dict()
    ot_params = params.StructuralOT(
      **{f.name: entry[f.name] for f in dataclasses.fields(params.StructuralOT)}
    )
  # The plan at the method's target epsilon, solved to convergence.
  epsilon = ot_params.sinkhorn_schedule().target_epsilon
  plan = ot.structural_plan(
    artifacts["student_z"][name][:size],
    artifacts["z_teacher"][:size],
    anchors=ot_params.anchors,
    k=min(ot_params.k, size - 1),
    epsilon=epsilon,
  )
  paths["transport_plan"] = plots.transport_plan(
    np.asarray(plan),
    out_dir / "transport_plan.png",
    title=f"{name}: transport plan, student rows -> teacher rows (eps={epsilon:g})",
  )
  return paths


def fold_and_seed(config: ml_collections.ConfigDict, run_index: int) -> tuple[int, int]:
  """``(fold, seed)`` of run ``run_index``: ``run_index mod num_folds``, ``seed + run_index``."""
  return run_index % config.num_folds, config.seed + run_index


def run_dir_name(config: ml_collections.ConfigDict, run_index: int) -> str:
  """The folder of run ``run_index`` in a workdir: ``run<r>_fold<fold>_seed<seed>``."""
  fold, seed = fold_and_seed(config, run_index)
  return f"run{run_index}_fold{fold}_seed{seed}"


def protocol(dataset: pipeline.Dataset) -> str:
  """How a dataset's examples are split into train, validation and test."""
  if dataset.split is not None:
    return "official split"
  if dataset.subject is not None:
    return "subject-independent folds"
  return "folds over examples (no subject ids: one subject may be in train and test)"


def make_split(
  config: ml_collections.ConfigDict, dataset: pipeline.Dataset, fold: int
) -> dict[str, np.ndarray]:
  """Example indices of ``train``, ``val`` and ``test`` for one fold (see :func:`protocol`).

  An official split is used as given; when it has no validation example, validation
  subjects (or examples) are carved from its training ones. Without an official split,
  ``config.num_folds`` subject-independent folds, or folds over examples without subjects,
  with ``config.val_subjects`` validation subjects (or examples; a count or a fraction)
  taken from each fold's training ones.

  Raises:
    ValueError: naming the dataset, if the subjects cannot make the folds plus validation, or
      a class has no training example in the fold.
  """
  groups = dataset.subject if dataset.subject is not None else np.arange(len(dataset))
  try:
    if dataset.split is None:
      split = splits.subject_folds(
        groups, config.num_folds, fold, config.val_subjects, seed=config.split_seed
      )
    else:
      split = {name: np.flatnonzero(dataset.split == i) for i, name in enumerate(SPLITS)}
      if not len(split["val"]):
        train = split["train"]
        carved = splits.holdout(groups[train], config.val_subjects, seed=config.split_seed)
        split |= {"train": train[carved["train"]], "val": train[carved["val"]]}
  except ValueError as error:
    raise ValueError(f"{dataset.description}: cannot split the dataset: {error}") from None
  if dataset.schema.task.kind == "classification":
    present = set(np.unique(dataset.y[split["train"]]).tolist())
    if missing := [n for c, n in enumerate(dataset.schema.task.names) if c not in present]:
      raise ValueError(
        f"{dataset.description}: classes {missing} have no training example in fold {fold}; "
        "use fewer folds or check `y`."
      )
  return split


def budget_strata(dataset: pipeline.Dataset) -> np.ndarray:
  """What a label budget counts examples of: classes, else subjects, else the whole split."""
  if dataset.schema.task.kind == "classification":
    return np.asarray(dataset.y)
  if dataset.subject is not None:
    return np.asarray(dataset.subject)
  return np.zeros(len(dataset), np.int64)


def make_context(
  config: ml_collections.ConfigDict,
  dataset: pipeline.Dataset,
  run_index: int,
  workdir: Path,
  mesh: jax.sharding.Mesh,
) -> context.Context:
  """Run ``run_index``: fold ``run_index mod num_folds``, seed ``config.seed + run_index``.

  With ``config.label_budget`` (examples per class, or per subject for a regression; 0: all)
  the training split keeps that many labelled examples of each, drawn by the run's seed
  (:func:`mtpkd_jax.data.splits.label_budget`): the same for every method of the run, nested
  across budgets; validation and test are unchanged. The rest of the training split is the
  split's ``unlabelled`` examples, which only students with ``unlabelled`` set see (their
  inputs, never their labels; :class:`mtpkd_jax.methods.params.Student`).
  """
  fold, seed = fold_and_seed(config, run_index)
  split = make_split(config, dataset, fold)
  if config.get("label_budget"):
    train = split["train"]
    kept = splits.label_budget(budget_strata(dataset)[train], config.label_budget, seed)
    split = {**split, "train": train[kept], "unlabelled": np.delete(train, kept)}
  return context.Context(
    config=config,
    schema=dataset.schema,
    dataset=dataset,
    split=split,
    workdir=Path(workdir) / run_dir_name(config, run_index),
    seed=seed,
    mesh=mesh,
  )


def open_dataset(config: ml_collections.ConfigDict) -> pipeline.Dataset:
  """The config's dataset, opened, with its roles and methods checked against its schema.

  Raises:
    ValueError: naming the dataset and the config field, on a visual or privileged name that
      is not one of its modalities, or an unknown method.
  """
  options = config.get("dataset_options")
  args = (config.dataset, config.data_dir, options.to_dict() if options else None)
  # Process 0 builds the dataset, if needed, before the others open it.
  if distributed.is_main():
    dataset = pipeline.open_dataset(
      *args, in_memory=config.get("in_memory"), num_workers=config.get("build_workers")
    )
  distributed.barrier("dataset_built")
  if not distributed.is_main():
    dataset = pipeline.open_dataset(*args, in_memory=config.get("in_memory"))
  try:
    dataset.schema.check_roles(config.visual, config.privileged)
  except ValueError as error:
    raise ValueError(f"{dataset.description}: {error}") from None
  _check_scoring(config, dataset)
  methods = [registry.get_method(name, config.visual) for name in config.methods]
  if not config.privileged and any(m.kind != "unimodal" for m in methods):
    raise ValueError(
      f"`config.privileged` is empty, but `config.methods` {tuple(config.methods)} need a "
      f"privileged modality; {dataset.description} has {list(dataset.schema.names)}."
    )
  if any(m.kind == "cmkt" for m in methods) and config.strong not in (None, *config.privileged):
    raise ValueError(
      f"`config.strong` is {config.strong!r}: CMKT's strong modality must be one of "
      f"`config.privileged` {tuple(config.privileged)}."
    )
  for name, method in zip(config.methods, methods, strict=True):
    if method.kind == "unimodal" and method.modality not in dataset.schema.names:
      raise ValueError(
        f"`config.methods` has {name!r}, but {dataset.description} has no modality "
        f"{method.modality!r}; its modalities are {list(dataset.schema.names)}."
      )
  return dataset


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  """Runs the comparison of ``config.methods`` and writes its report under ``workdir``.

  The config and the dataset's schema are saved to ``workdir`` (``config.json``,
  ``schema.json``), so that a finished run can predict on new data
  (:mod:`mtpkd_jax.comparison.predict`); each run's split goes to ``<run>/split.json``.

  Args:
    config: an experiment config (see ``experiments/configs/``).
    workdir: where checkpoints, logs, tables and plots go; rerun to resume.

  Returns:
    The results dict (see :func:`mtpkd_jax.comparison.report.summarize`), with what it ran
    on under ``environment`` (:func:`~mtpkd_jax.comparison.environment.environment`) and the
    paths of the written tables and plots under ``files``. In a multi-process run every process
    trains and evaluates; process 0 alone writes files, and the others' results have no
    ``files`` or ``plots``.

  Raises:
    ValueError: naming the config field, on any bad setting
      (:mod:`~mtpkd_jax.comparison.settings`), before anything in ``workdir`` is written or
      moved aside.
    PermissionError: naming the folder, if ``workdir`` (or a folder in it) is read-only.
    RuntimeError: if another training holds ``workdir``
      (:func:`mtpkd_jax.comparison.workdir.lock`).
  """
  start = time.perf_counter()
  workdir = Path(workdir)
  # Every setting is checked before anything in the workdir is written or moved aside.
  settings.check_config(config)
  workdir_lib.check_writable(workdir)
  dataset = open_dataset(config)
  mesh = parallel.make_mesh(config.num_devices)
  contexts = [make_context(config, dataset, r, workdir, mesh) for r in range(config.num_runs)]
  settings.check_runs(contexts)
  if not distributed.is_main():
    return _run(config, workdir, dataset, contexts, start)
  with workdir_lib.lock(workdir):
    return _run(config, workdir, dataset, contexts, start)


def _run(config, workdir: Path, dataset, contexts, start: float) -> dict:
  """:func:`run` once its settings are checked (and, in process 0, the workdir locked)."""
  main = distributed.is_main()  # Files are written by process 0 alone.
  workdir.mkdir(parents=True, exist_ok=True)
  if main:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
    (workdir / "schema.json").write_text(json.dumps(dataset.schema.to_json(), indent=1))
  task = dataset.schema.task
  tune = tuning.grid(config.methods, config.get("tune") or {})
  results = {
    "dataset": dataset.description,
    "task": task.kind,
    "protocol": protocol(dataset),
    "metrics": list(evaluation.metric_names(task, config.metrics)),
    "scoring": evaluation.SCORINGS[config.scoring],
    "baseline": config.baseline,
    **({"tune": {name: list(c) for name, c in tune.items()}} if tune else {}),
    "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""),
    "environment": environment.environment(),
    "runs": [],
  }
  logging.info(
    "Dataset %s: %d examples, %s.", dataset.description, len(dataset), results["protocol"]
  )
  for r, ctx in enumerate(contexts):
    run_start = time.perf_counter()
    (fold, seed), run_dir = fold_and_seed(config, r), ctx.workdir
    logging.info(
      "Run %d: fold %d, seed %d, %s", r, fold, seed, {k: len(v) for k, v in ctx.split.items()}
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
      split = {k: v.tolist() for k, v in ctx.split.items()}
      (run_dir / "split.json").write_text(json.dumps(split))
    tested, artifacts = _train_and_evaluate(ctx, tuning.trained(config.methods, tune))
    validation = _validation_scores(ctx, {c for candidates in tune.values() for c in candidates})
    methods, tuned = tuning.select(config.methods, tune, tested, validation)
    if r == 0 and main:
      results["plots"] = {
        k: str(v) for k, v in _plot_run(run_dir, artifacts, config, workdir).items()
      }
    results["runs"].append(
      {
        "run": r,
        "fold": fold,
        "seed": seed,
        "methods": methods,
        **({"tuning": tuned} if tuned else {}),
        "wall_time_s": time.perf_counter() - run_start,
      }
    )
  results["wall_time_s"] = time.perf_counter() - start
  if not main:
    return results
  if set(config.methods) - {config.baseline}:
    results["plots"]["paired_differences"] = str(
      plots.paired_differences(
        report.summarize(results),
        evaluation.score_metric(task, config.metrics),
        config.baseline,
        workdir / "paired_differences.png",
      )
    )
  results["files"] = {k: str(v) for k, v in report.write_reports(results, workdir).items()}
  return results
