"""One stage trained end to end: its record, its batches, its state, its logs, its output.

:func:`fit` is what every stage of every method runs: it checks the stage's record of what it
is built from (:mod:`mtpkd_jax.train.provenance`), batches a table of examples, builds the
train state, opens the stage's metric writer and runs :func:`mtpkd_jax.train.loop.fit`, then
returns the saved stage output. It knows nothing of methods: the model, the loss, the
validation and the record are given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from absl import logging

from mtpkd_jax.data import pipeline
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.train import checkpoint, loop, provenance, step, writers
from mtpkd_jax.train.state import create_train_state


def num_epochs(epochs: int, min_steps: int, epoch_steps: int) -> int:
  """The passes a stage makes: ``epochs``, or the fewest whole ones of ``min_steps`` steps.

  Args:
    epochs: the passes asked for.
    min_steps: the fewest steps asked for.
    epoch_steps: the steps of one pass (batches of the training split).
  """
  return max(epochs, -(-min_steps // epoch_steps))


def fit(
  run: loop.StageRun,
  model: nn.Module,
  variables: Mapping[str, Any],
  loss_fn: Callable[..., Any],
  table: table_lib.Table,
  train_indices: np.ndarray,
  *,
  record: Mapping[str, Any],
  seed: int,
  epochs: int,
  batch_size: int,
  min_steps: int = 0,
  tx: optax.GradientTransformation,
  eval_fn: loop.EvalFn,
  frozen: Any = None,
  parts: Mapping[str, loop.PartSelection] | None = None,
  extra_indices: np.ndarray | None = None,
  extra_batch_size: int = 0,
  term_weights: Mapping[str, float] | None = None,
) -> dict:
  """Trains stage ``run`` on the examples ``train_indices`` of ``table``; returns its output.

  A stage whose saved ``record`` differs from the given one is retrained from scratch
  (:func:`mtpkd_jax.train.provenance.ensure`); an unchanged one resumes from its last
  checkpoint. Batches of ``batch_size`` are drawn without replacement (the last partial
  batch of an epoch dropped) in an order fixed by ``seed``; validation and logging run once
  an epoch. The output is the step of the best validation ``score``, except the modules of
  ``parts`` (:class:`mtpkd_jax.train.loop.PartSelection`). With ``extra_indices`` every
  batch is followed by ``extra_batch_size`` of those examples (a student's unlabelled ones,
  :func:`mtpkd_jax.data.pipeline.batch_dataset`); epochs and steps count the batches of
  ``train_indices``.

  Args:
    run: the stage's name, directory, mesh, base key and checkpoint schedule, as
      :func:`mtpkd_jax.train.loop.fit` takes them.
    model: the network (its ``apply`` goes into the train state).
    variables: its initial variables (``params``, optionally ``batch_stats``).
    loss_fn: ``loss_fn(params, batch_stats, batch, rng, frozen) -> (loss, (metrics,
      batch_stats))``, per device (:func:`mtpkd_jax.train.step.make_train_step`).
    table: every example's columns the loss reads.
    train_indices: the training examples of ``table``.
    record: what the stage is built from (JSON-serialisable).
    seed: the seed of the batch order.
    epochs: passes over ``train_indices``.
    batch_size: examples per (global) batch.
    min_steps: the fewest updates: more (whole) epochs than ``epochs`` when they take fewer
      (:func:`num_epochs`).
    tx: the optimizer.
    eval_fn: ``eval_fn(params, batch_stats) -> {metric: value}`` with ``score`` (higher is
      better) and the metrics of ``parts``.
    frozen: the step's frozen input (e.g. a teacher's parameters), never trained nor saved.
    parts: modules selected on their own validation metric.
    extra_indices: the examples of a second stream in every batch, or ``None``.
    extra_batch_size: their rows in every batch.
    term_weights: the loss terms whose gradient norms each step logs, with their weights
      (:func:`mtpkd_jax.train.step.make_train_step`).

  Returns:
    The stage output's variables, as its successors load them.
  """
  provenance.ensure(run.workdir, run.name, record)
  epoch_steps = pipeline.steps_per_epoch(len(train_indices), batch_size, drop_remainder=True)
  passes = num_epochs(epochs, min_steps, epoch_steps)
  # Said whenever the training split is too small for `epochs` to reach `min_steps`.
  log = logging.warning if passes > epochs else logging.info
  log(
    "Stage %s: %d steps: %d epochs of %d batches of %d (%d training examples; epochs=%d, "
    "min_steps=%d).",
    run.name,
    passes * epoch_steps,
    passes,
    epoch_steps,
    batch_size,
    len(train_indices),
    epochs,
    min_steps,
  )
  if extra_indices is not None:
    logging.info(
      "Stage %s: each batch followed by %d of %d further examples.",
      run.name,
      extra_batch_size,
      len(extra_indices),
    )
  dataset = pipeline.batch_dataset(
    table,
    train_indices,
    batch_size=batch_size,
    seed=seed,
    drop_remainder=True,
    num_epochs=None,
    num_shards=jax.process_count(),
    shard_index=jax.process_index(),
    extra_indices=extra_indices,
    extra_batch_size=extra_batch_size,
  )
  state = create_train_state(model.apply, variables, tx)
  logdir = checkpoint.stage_dir(run.workdir, run.name) / "logs"
  with writers.MetricWriter(logdir) as writer:
    loop.fit(
      state,
      step.make_train_step(loss_fn, term_weights=term_weights),
      run,
      batch_for_step=pipeline.ReadAhead(dataset),
      num_steps=passes * epoch_steps,
      frozen=frozen,
      eval_fn=eval_fn,
      eval_every=epoch_steps,
      best_metric="score",
      best_mode="max",
      parts=parts,
      log_every=epoch_steps,
      writer=writer,
    )
  output, _ = checkpoint.load_stage_output(run.workdir, run.name)
  return output
