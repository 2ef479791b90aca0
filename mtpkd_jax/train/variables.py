"""Flax variable collections: building them, applying a model in train mode, surgery.

Variables are ``{"params": ..., "batch_stats": ...}`` dicts (``batch_stats`` only for models
with BatchNorm), as :func:`mtpkd_jax.train.state.create_train_state` takes them. On disk (a
converted pretrained backbone, :mod:`mtpkd_jax.models.convert_torchvision`) they are an
``.npz`` file with one array per leaf, named by its path joined with ``/``
(``params/stem/kernel``).
"""

from __future__ import annotations

import os

import flax.linen as nn
import numpy as np
from flax import traverse_util


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


def save_npz(path: str | os.PathLike, values) -> None:
  """Writes ``values`` to the ``.npz`` file ``path``, one array per ``/``-joined leaf path."""
  flat = traverse_util.flatten_dict(values, sep="/")
  with open(path, "wb") as f:
    np.savez(f, **{k: np.asarray(v) for k, v in flat.items()})


def load_npz(path: str | os.PathLike) -> dict:
  """The variables :func:`save_npz` wrote to ``path``, as nested dicts of NumPy arrays."""
  with np.load(path) as f:
    return traverse_util.unflatten_dict({k: f[k] for k in f.files}, sep="/")


def graft_checked(values, name: str, sub, source: str) -> dict:
  """:func:`graft` of ``sub``, which must have the leaves and shapes submodule ``name`` has.

  Args:
    values: variables, e.g. freshly initialised.
    name: the submodule that ``sub`` replaces.
    sub: its new variables, e.g. :func:`load_npz` of a pretrained backbone; cast to the
      dtypes of the leaves they replace.
    source: where ``sub`` comes from, for the error message.

  Returns:
    ``values`` with submodule ``name`` replaced by ``sub``.

  Raises:
    ValueError: naming the leaves of ``name`` that ``sub`` lacks, those it has beyond them,
      and those whose shape differs, with both shapes (the first 8, and how many more).
  """
  old = traverse_util.flatten_dict(sub_variables(values, name), sep="/")
  new = traverse_util.flatten_dict(sub, sep="/")
  problems = [f"missing {k}" for k in sorted(old.keys() - new)]
  problems += [f"unexpected {k}" for k in sorted(new.keys() - old)]
  problems += [
    f"{k} has shape {tuple(np.shape(new[k]))}, expected {tuple(np.shape(old[k]))}"
    for k in sorted(old.keys() & new.keys())
    if np.shape(new[k]) != np.shape(old[k])
  ]
  if problems:
    more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
    raise ValueError(f"{source} does not fit submodule {name!r}: {'; '.join(problems[:8])}{more}.")
  cast = {k: np.asarray(v, old[k].dtype) for k, v in new.items()}
  return graft(values, name, traverse_util.unflatten_dict(cast, sep="/"))
