"""A method's loss as named terms, weighted by the config and summed here alone.

A student's distillation gives its terms by name (:data:`TERMS`: ``kd``, ``ot``,
``centroid``, ``translation``, ``alignment``), the step adds ``task``, and :func:`total`
weighs them with the config entries its :class:`~mtpkd_jax.methods.registry.Method` names
(``pkd``'s ``{"task": "alpha", "kd": "beta"}``: MT-PKDOT's ``alpha * L_task + beta * L_OT +
gamma * L_cent`` keeps the paper's names in the config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.train import parallel

TERMS = ("task", "kd", "ot", "centroid", "translation", "alignment")


def task_loss(outputs: jax.Array, batch: Mapping[str, Any], task: str) -> jax.Array:
  """The task loss on the global batch (``1 - CCC`` is a statistic of the batch).

  Called inside a data-parallel step: ``outputs`` and ``batch``'s targets are all-gathered
  over the ``data`` axis first.
  """
  targets = {task_lib.TARGET_KEY: batch[task_lib.TARGET_KEY]}
  return task_lib.task_loss(*parallel.all_gather_batch((outputs, targets)), task)


def total(
  terms: Mapping[str, jax.Array],
  weight_keys: Mapping[str, str],
  cfg,
) -> jax.Array:
  """``Σ_t cfg.<weight_keys[t]> * terms[t]`` over the terms of ``weight_keys``, in its order.

  Every weighted term is summed, a zero weight included (its term is still computed and
  logged).

  Args:
    terms: the loss terms by name (:data:`TERMS`), scalars; terms without a weight are
      logged only.
    weight_keys: the parameter that weighs each term, e.g. ``{"task": "alpha"}``.
    cfg: the method's typed parameters (:func:`~mtpkd_jax.methods.registry.method_params`).

  Raises:
    ValueError: naming the term, if a weighted term is missing or not one of :data:`TERMS`.
  """
  loss = None
  for name, key in weight_keys.items():
    if name not in TERMS or name not in terms:
      raise ValueError(
        f"Loss term {name!r} (weighted by {key!r}) must be one of {TERMS} and computed; "
        f"the terms are {sorted(terms)}."
      )
    value = getattr(cfg, key) * terms[name]
    loss = value if loss is None else loss + value
  return loss
