"""A student that sees the examples a label budget leaves unlabelled reads their inputs only.

Its batches are 8 labelled rows followed by 8 unlabelled ones (``Context.split``'s
``unlabelled``); the step must never read the unlabelled rows' labels, and must read their
inputs and teacher targets.
"""

import jax
import numpy as np
import pytest

from tests.methods.stages_test import _assert_same_training, _run_shard_map, _student_setup

pytestmark = pytest.mark.fast_compile

# 8 labelled training examples, 8 unlabelled: each batch of 16 rows holds 8 of each.
SPLIT = {"train": np.arange(8), "unlabelled": np.arange(8, 16), "val": np.arange(16, 20)}
METHODS = ("pkd:unlabelled=true", "mt_pkdot:unlabelled=true")


def _with(batches, key, rows, values):
  """``batches`` with ``key`` replaced by ``values(old)`` on ``rows``."""
  changed = []
  for batch in batches:
    column = batch[key].copy()
    column[rows] = values(column[rows])
    changed.append({**batch, key: column})
  return changed


@pytest.mark.parametrize("method", METHODS)
def test_the_unlabelled_rows_labels_change_nothing(tmp_path, method):
  initial, step, batches, joint = _student_setup(tmp_path, method=method, split=SPLIT)
  reference = _run_shard_map(initial, step, batches, joint, 1)
  flipped = _run_shard_map(
    initial, step, _with(batches, "y", slice(8, None), lambda y: 1 - y), joint, 1
  )
  _assert_same_training([flipped], reference, initial, ())
  for name in ("loss", "task"):
    assert float(reference[1][name]) == float(flipped[1][name])


@pytest.mark.parametrize("method", METHODS)
def test_the_unlabelled_rows_inputs_reach_the_distillation_but_not_the_task(tmp_path, method):
  initial, step, batches, joint = _student_setup(tmp_path, method=method, split=SPLIT)
  term = "kd" if method.startswith("pkd") else "ot"
  reference = _run_shard_map(initial, step, batches[:1], joint, 1)[1]
  moved = _run_shard_map(
    initial, step, _with(batches[:1], "video", slice(8, None), lambda x: -x), joint, 1
  )[1]
  assert float(moved["task"]) == float(reference["task"])
  assert abs(float(moved[term]) - float(reference[term])) > 1e-3


def test_without_unlabelled_rows_the_labels_of_every_row_are_read(tmp_path):
  """The control of the first test: the same batches, every row labelled."""
  initial, step, batches, joint = _student_setup(tmp_path, method="pkd")
  reference = _run_shard_map(initial, step, batches[:1], joint, 1)[1]
  flipped = _with(batches[:1], "y", slice(8, None), lambda y: 1 - y)
  assert float(_run_shard_map(initial, step, flipped, joint, 1)[1]["task"]) != float(
    reference["task"]
  )


def test_labelled_and_unlabelled_rows_train_identically_on_one_and_eight_devices(tmp_path):
  """Devices 0-3 hold the labelled rows, 4-7 the unlabelled ones; 8 devices equal 1."""
  assert jax.device_count() == 8
  setup = _student_setup(tmp_path, method="mt_pkdot:unlabelled=true", split=SPLIT)
  single = _run_shard_map(*setup, 1)
  _assert_same_training([_run_shard_map(*setup, 8)], single, setup[0], ("loss", "task", "ot"))
