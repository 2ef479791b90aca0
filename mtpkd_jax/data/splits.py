"""Subject-independent folds: no subject's examples are in two splits.

The released MT-PKDOT code stratified BioVid folds over samples, so test subjects were also
trained on. Here subjects are shuffled once by `seed`, cut into `num_folds` test groups,
and the validation subjects (for model selection) are taken from the fold's training
subjects. `num_folds` equal to the number of subjects is leave-one-subject-out.
"""

from __future__ import annotations

import numbers

import numpy as np


def subject_folds(
  subjects: np.ndarray,
  num_folds: int,
  fold: int,
  val_subjects: int | float,
  seed: int,
) -> dict[str, np.ndarray]:
  """Example indices of one subject-independent fold.

  Args:
    subjects: Integer array of shape `[num_examples]`: the subject of each example.
    num_folds: Number of folds (>= 2); each subject is in the `test` split of exactly one.
    fold: Which fold, in `[0, num_folds)`.
    val_subjects: Validation subjects taken from the fold's training subjects: a count
      (int >= 0) or a fraction in `(0, 1)` of them (rounded, at least one).
    seed: Seed of the subject shuffle; the same seed gives the same folds.

  Returns:
    Dict with `train`, `val` and `test`: sorted int64 arrays of example indices into
    `subjects`. Their subjects are disjoint and together cover every subject.

  Raises:
    ValueError: naming the argument, on non-1-D or non-integer `subjects`, `num_folds` < 2
      or larger than the number of subjects, `fold` out of range, or a `val_subjects` that
      would leave no training subject.
  """
  subjects = np.asarray(subjects)
  if subjects.ndim != 1 or not np.issubdtype(subjects.dtype, np.integer):
    raise ValueError(
      f"`subjects` must be a 1-D integer array, got shape {subjects.shape} and dtype "
      f"{subjects.dtype}."
    )
  unique = np.unique(subjects)
  if isinstance(num_folds, bool) or not isinstance(num_folds, numbers.Integral) or num_folds < 2:
    raise ValueError(f"`num_folds` must be an integer >= 2, got {num_folds!r}.")
  if num_folds > len(unique):
    raise ValueError(
      f"`num_folds`={num_folds} needs at least as many subjects, but `subjects` has {len(unique)}."
    )
  if isinstance(fold, bool) or not isinstance(fold, numbers.Integral) or not 0 <= fold < num_folds:
    raise ValueError(f"`fold` must be an integer in [0, {num_folds}), got {fold!r}.")

  shuffled = np.random.default_rng(seed).permutation(unique)
  test = np.array_split(shuffled, num_folds)[fold]
  rest = shuffled[~np.isin(shuffled, test)]
  num_val = _num_val_subjects(val_subjects, len(rest))
  groups = {"train": rest[num_val:], "val": rest[:num_val], "test": test}
  return {name: np.flatnonzero(np.isin(subjects, group)) for name, group in groups.items()}


def _num_val_subjects(val_subjects: int | float, num_rest: int) -> int:
  """Validates `val_subjects` against `num_rest` non-test subjects; returns a count."""
  if isinstance(val_subjects, bool) or not isinstance(val_subjects, numbers.Real):
    raise ValueError(f"`val_subjects` must be an int or a float, got {val_subjects!r}.")
  if isinstance(val_subjects, numbers.Integral):
    count = int(val_subjects)
  elif 0.0 < val_subjects < 1.0:
    count = max(1, round(val_subjects * num_rest))
  else:
    raise ValueError(f"A float `val_subjects` must be in (0, 1), got {val_subjects!r}.")
  if not 0 <= count < num_rest:
    raise ValueError(
      f"`val_subjects`={val_subjects!r} must leave at least one of the fold's {num_rest} "
      "non-test subjects for training."
    )
  return count


def holdout(groups: np.ndarray, val_groups: int | float, seed: int) -> dict[str, np.ndarray]:
  """Carves validation groups (subjects, or examples) out of a training set.

  Args:
    groups: Integer array of shape `[n]`: the group of each training example.
    val_groups: A count (int >= 0) or a fraction in `(0, 1)` of the groups.
    seed: Seed of the group shuffle.

  Returns:
    Dict with `train` and `val`: sorted positions into `groups`, with disjoint groups.

  Raises:
    ValueError: if `val_groups` would leave no training group.
  """
  shuffled = np.random.default_rng(seed).permutation(np.unique(groups))
  val = shuffled[: _num_val_subjects(val_groups, len(shuffled))]
  return {
    "train": np.flatnonzero(~np.isin(groups, val)),
    "val": np.flatnonzero(np.isin(groups, val)),
  }


def label_budget(strata: np.ndarray, budget: int, seed: int) -> np.ndarray:
  """The labelled examples of a training split: ``budget`` of each stratum, drawn by ``seed``.

  Each stratum (a class, or a subject) is shuffled by ``seed`` alone and its first
  ``budget`` examples are kept (all of a smaller one), so the budgets of one seed are nested:
  a larger budget keeps every example of a smaller one.

  Args:
    strata: integer array of shape ``[n]``: the stratum of each training example.
    budget: examples kept per stratum, ``>= 1``.
    seed: the seed of the draw (a run's seed).

  Returns:
    Sorted positions into ``strata``.

  Raises:
    ValueError: if ``budget`` is below 1.
  """
  if budget < 1:
    raise ValueError(f"`budget` must be >= 1 examples per stratum, got {budget}.")
  rng = np.random.default_rng(seed)
  kept = [
    rng.permutation(np.flatnonzero(strata == stratum))[:budget] for stratum in np.unique(strata)
  ]
  return np.sort(np.concatenate(kept))
