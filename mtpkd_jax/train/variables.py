"""Flax variable collections: building them, applying a model in train mode, surgery.

Variables are ``{"params": ..., "batch_stats": ...}`` dicts (``batch_stats`` only for models
with BatchNorm), as :func:`mtpkd_jax.train.state.create_train_state` takes them.
"""

from __future__ import annotations

import flax.linen as nn


def variables(params, batch_stats) -> dict:
  """``{"params": params}``, plus ``batch_stats`` when there are any."""
  return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def apply_train(model: nn.Module, params, batch_stats, rng, *args):
  """``model.apply`` in train mode; returns ``(outputs, new_batch_stats)``."""
  values = variables(params, batch_stats)
  if not batch_stats:
    return model.apply(values, *args, train=True, rngs={"dropout": rng}), batch_stats
  out, updates = model.apply(
    values, *args, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
  )
  return out, updates["batch_stats"]


def sub_variables(values, name: str) -> dict:
  """The variables of submodule ``name``, in every collection that has it."""
  return {col: tree[name] for col, tree in values.items() if name in tree}


def graft(values, name: str, sub) -> dict:
  """``values`` with submodule ``name`` replaced by ``sub`` (in ``sub``'s collections)."""
  out = {col: dict(tree) for col, tree in values.items()}
  for col, tree in sub.items():
    out.setdefault(col, {})[name] = tree
  return out
