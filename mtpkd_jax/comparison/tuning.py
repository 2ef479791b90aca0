"""Methods tuned on validation: each run keeps the candidate its validation score picks.

``config.tune`` maps a method of ``config.methods`` to its candidates, variants of the same
base method by name (:mod:`mtpkd_jax.methods.registry`), e.g.
``{"pkd": ("pkd", "pkd:beta=1.0"), "pkd:beta=0": ("pkd:beta=0", "pkd:beta=0,lr_scale=3.0")}``.
Every candidate trains as a stage of its own, beside the others and on the same teachers;
then, in each run (one fold and one seed) apart, the candidate with the best validation
score (the ``score`` its stage selected its best step on) is picked, and its test metrics
become the method's row. Test scores never take part in the choice, and the control is
tuned as the methods are, so the paired differences of
:func:`mtpkd_jax.comparison.report.summarize` compare tuned rows run by run. Epochs need no
grid: every stage already keeps its best validation step.

The functions here are pure: they read names, metrics and scores, not stages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def grid(methods: Sequence[str], tune: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
  """The candidates of every tuned method of ``methods``, in ``methods``' order.

  Entries of ``tune`` for methods a run does not train are unused, as the entries of
  ``config.method_params`` are.
  """
  return {name: tuple(tune[name]) for name in methods if name in tune}


def trained(methods: Sequence[str], tune: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
  """Every method and candidate a run trains and tests, each once.

  A tuned method's candidates stand in its place (the method itself is trained only when it
  is one of them, or another method of ``methods``).
  """
  names = grid(methods, tune)
  return tuple(dict.fromkeys(c for name in methods for c in names.get(name, (name,))))


def pick(candidates: Sequence[str], validation: Mapping[str, float]) -> str:
  """The candidate with the highest validation score; of equal scores, the first.

  Args:
    candidates: the names, in the order ties are broken in.
    validation: ``{candidate: score}``, higher is better; a NaN score (a diverged stage)
      loses to every number.

  Raises:
    ValueError: for no candidates.
  """
  if not candidates:
    raise ValueError("No candidates to pick from.")

  def key(candidate: str) -> float:
    score = validation[candidate]
    return -math.inf if math.isnan(score) else score

  best = candidates[0]
  for candidate in candidates[1:]:
    if key(candidate) > key(best):
      best = candidate
  return best


def select(
  methods: Sequence[str],
  tune: Mapping[str, Sequence[str]],
  test: Mapping[str, Mapping[str, float]],
  validation: Mapping[str, float],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
  """One run's rows: a tuned method's row is the test metrics of the candidate it picked.

  Args:
    methods: the run's methods (``config.methods``), in order.
    tune: the candidates of each tuned method (``config.tune``).
    test: ``{name: {metric: value}}``, the test metrics of every name :func:`trained` gives.
    validation: ``{candidate: score}``, the validation score of every candidate.

  Returns:
    ``(rows, tuning)``: ``rows`` is ``{method: test metrics}`` in ``methods``' order, the
    picked candidate's for a tuned method; ``tuning`` is, for each tuned method,
    ``{"picked": candidate, "candidates": {candidate: {"validation": score, "test":
    metrics}}}``, every candidate kept.
  """
  rows, tuning = {}, {}
  candidates = grid(methods, tune)
  for name in methods:
    if name not in candidates:
      rows[name] = dict(test[name])
      continue
    picked = pick(candidates[name], validation)
    rows[name] = dict(test[picked])
    tuning[name] = {
      "picked": picked,
      "candidates": {
        c: {"validation": float(validation[c]), "test": dict(test[c])} for c in candidates[name]
      },
    }
  return rows, tuning


def picked_counts(runs: Sequence[Mapping[str, Any]], method: str) -> dict[str, int]:
  """``{candidate: runs that picked it}`` for ``method`` over ``runs`` (their ``tuning``).

  Every candidate is counted, those never picked as 0, in the order of the candidates; an
  untuned method gives ``{}``.
  """
  counts: dict[str, int] = {}
  for run in runs:
    record = run.get("tuning", {}).get(method)
    if record is None:
      continue
    for candidate in record["candidates"]:
      counts.setdefault(candidate, 0)
    counts[record["picked"]] += 1
  return counts
