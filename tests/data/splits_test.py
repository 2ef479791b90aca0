"""Tests of subject-independent folds."""

import numpy as np
import pytest

from mtpkd_jax.data import splits

# 10 subjects with uneven example counts, in no particular order.
SUBJECTS = np.random.default_rng(0).permutation(np.repeat(np.arange(10) * 3 + 7, np.arange(10) + 2))


def _subjects_of(split):
  return {name: set(SUBJECTS[indices].tolist()) for name, indices in split.items()}


@pytest.mark.parametrize("fold", range(3))
def test_splits_are_subject_disjoint_and_cover_everything(fold):
  split = splits.subject_folds(SUBJECTS, num_folds=3, fold=fold, val_subjects=2, seed=0)
  groups = _subjects_of(split)
  assert not groups["train"] & groups["val"]
  assert not groups["train"] & groups["test"]
  assert not groups["val"] & groups["test"]
  assert len(groups["val"]) == 2
  all_indices = np.concatenate(list(split.values()))
  np.testing.assert_array_equal(np.sort(all_indices), np.arange(len(SUBJECTS)))
  for indices in split.values():
    np.testing.assert_array_equal(indices, np.sort(indices))


def test_each_subject_is_tested_exactly_once():
  tested = [
    _subjects_of(splits.subject_folds(SUBJECTS, 4, fold, 1, seed=3))["test"] for fold in range(4)
  ]
  assert sorted(s for group in tested for s in group) == sorted(set(SUBJECTS.tolist()))
  assert sorted(len(group) for group in tested) == [2, 2, 3, 3]


def test_val_subjects_are_drawn_from_the_training_subjects_of_the_fold():
  # The same fold with and without validation: val + train equals the train without val.
  with_val = _subjects_of(splits.subject_folds(SUBJECTS, 5, 1, val_subjects=0.25, seed=0))
  without = _subjects_of(splits.subject_folds(SUBJECTS, 5, 1, val_subjects=0, seed=0))
  assert with_val["test"] == without["test"]
  assert with_val["train"] | with_val["val"] == without["train"]
  assert len(with_val["val"]) == 2  # round(0.25 * 8)


def test_deterministic_and_seed_dependent():
  a = splits.subject_folds(SUBJECTS, 3, 0, 1, seed=5)
  b = splits.subject_folds(SUBJECTS, 3, 0, 1, seed=5)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])
  others = [splits.subject_folds(SUBJECTS, 3, 0, 1, seed=s)["test"] for s in range(6, 10)]
  assert any(not np.array_equal(a["test"], other) for other in others)


def test_leave_one_subject_out():
  for fold in range(10):
    split = splits.subject_folds(SUBJECTS, 10, fold, val_subjects=1, seed=0)
    groups = _subjects_of(split)
    assert len(groups["test"]) == 1 and len(groups["val"]) == 1 and len(groups["train"]) == 8


@pytest.mark.parametrize(
  "kwargs, argument",
  [
    (dict(subjects=SUBJECTS.astype(float)), "subjects"),
    (dict(subjects=SUBJECTS[None]), "subjects"),
    (dict(num_folds=1), "num_folds"),
    (dict(num_folds=11), "num_folds"),
    (dict(num_folds=2.0), "num_folds"),
    (dict(fold=3), "fold"),
    (dict(fold=-1), "fold"),
    (dict(val_subjects=6), "val_subjects"),  # Fold 0 of 3 leaves 6 non-test subjects.
    (dict(val_subjects=-1), "val_subjects"),
    (dict(val_subjects=1.0), "val_subjects"),
    (dict(val_subjects=True), "val_subjects"),
  ],
)
def test_bad_input_names_the_argument(kwargs, argument):
  arguments = dict(subjects=SUBJECTS, num_folds=3, fold=0, val_subjects=1, seed=0) | kwargs
  with pytest.raises(ValueError, match=f"`{argument}`"):
    splits.subject_folds(**arguments)


def test_a_label_budget_keeps_that_many_of_each_stratum_nested_across_budgets():
  strata = np.repeat([0, 1, 2], [30, 12, 3])
  np.random.default_rng(0).shuffle(strata)
  kept = {b: splits.label_budget(strata, b, seed=7) for b in (1, 5, 10, 100)}
  for budget, positions in kept.items():
    counts = np.bincount(strata[positions], minlength=3)
    np.testing.assert_array_equal(counts, np.minimum([30, 12, 3], budget))
    assert np.all(np.diff(positions) > 0)  # Sorted, no repeats.
  for small, large in ((1, 5), (5, 10), (10, 100)):
    assert set(kept[small]) <= set(kept[large])
  np.testing.assert_array_equal(kept[5], splits.label_budget(strata, 5, seed=7))
  assert set(kept[5]) != set(splits.label_budget(strata, 5, seed=8))
  with pytest.raises(ValueError, match="`budget` must be >= 1"):
    splits.label_budget(strata, 0, seed=7)
