"""A label-budget sweep: nested labelled examples, one comparison each, one table."""

import json

import numpy as np
import pytest

from mtpkd_jax.comparison import budgets
from mtpkd_jax.data import pipeline
from tests.experiments.features_test import _config
from tests.features_files import write_features

pytestmark = [pytest.mark.fast_compile, pytest.mark.slow]

# PKD whose distillation term also sees the training examples the budget leaves unlabelled.
UNLABELLED = "pkd:unlabelled=true"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  root = tmp_path_factory.mktemp("budgets")
  write_features(root / "f.npz")
  config = _config(
    root / "f.npz",
    root / "tfds",
    methods=("visual_only", "pkd:beta=0", "pkd", UNLABELLED),
    baseline="visual_only",
    control="pkd:beta=0",
    num_runs=1,
  )
  config.label_budgets = (0, 3)  # Trained smallest first.
  config.stages.student.term_grad_norms = True
  joined = []  # Each training stage's rows a batch: (labelled, unlabelled, of how many).

  def recording(table, indices, **kw):
    if kw["seed"] is not None:  # Training batches (evaluation keeps its order).
      extra = kw.get("extra_indices")
      joined.append(
        (kw["batch_size"], kw.get("extra_batch_size", 0), 0 if extra is None else len(extra))
      )
    return batch_dataset(table, indices, **kw)

  batch_dataset = pipeline.batch_dataset
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(pipeline, "batch_dataset", recording)
    result = budgets.run(config, root / "work")
  return result, root / "work", joined


def _splits(workdir, budget, run):
  folder = workdir / budgets.budget_dir(budget)
  return json.loads(next(folder.glob(f"run{run}_*/split.json")).read_text())


def test_each_budget_keeps_its_labels_per_class_nested_and_the_evaluation_splits(sweep):
  result, workdir, _ = sweep
  y = np.load(workdir.parent / "f.npz")["y"]
  assert [entry["budget"] for entry in result["budgets"]] == [3, "all"]
  small, full = _splits(workdir, 3, 0), _splits(workdir, 0, 0)
  np.testing.assert_array_equal(np.bincount(y[small["train"]]), [3, 3])
  assert set(small["train"]) < set(full["train"])
  assert (small["val"], small["test"]) == (full["val"], full["test"])
  assert result["budgets"][0]["train_examples"] == [6]


def test_the_table_gives_every_budgets_scores_and_differences_to_the_control(sweep):
  result, workdir, _ = sweep
  assert result["reference"] == "pkd:beta=0"
  table = (workdir / "budgets.md").read_text()
  assert "| method | 3 per class | all per class |" in table
  assert "difference to `pkd:beta=0`" in table
  pkd = next(r for r in result["budgets"][0]["summary"] if r["method"] == "pkd")
  stats = pkd["metrics"][result["metric"]]
  assert stats["delta_runs"] == 1 and np.isfinite(stats["delta"])
  assert f"Δ {stats['delta']:+.3f}" in table
  assert json.loads((workdir / "budgets.json").read_text())["metric"] == result["metric"]
  assert (workdir / "budget_differences.png").stat().st_size > 0


def test_only_the_students_that_ask_see_the_examples_a_budget_leaves_unlabelled(sweep):
  _, workdir, joined = sweep
  split = _splits(workdir, 3, 0)
  assert sorted(split["train"] + split["unlabelled"]) == sorted(_splits(workdir, 0, 0)["train"])
  # Budget 3 (6 labelled, the rest unlabelled), then every label: 6 stages each (two
  # unimodal, the joint teacher, three students), of which only budget 3's last student, PKD
  # with `unlabelled`, sees unlabelled rows: 8 a batch (the smoke student's batch size).
  assert len(joined) == 12
  small, full = joined[:6], joined[6:]
  assert small[-1] == (6, 8, len(split["unlabelled"]))
  assert all(extra == 0 for _, extra, _ in small[:-1] + full)


def test_students_log_each_weighted_terms_gradient_norm(sweep):
  _, workdir, _ = sweep
  run = next((workdir / budgets.budget_dir(3)).glob("run0_*"))

  def logged(stage):
    lines = (run / stage / "logs" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return [row for row in rows if "train/grad_norm/task" in row]

  pkd, control = logged("student_pkd"), logged("student_pkd:beta=0")
  assert pkd and all(row["train/grad_norm/kd"] > 0 for row in pkd)
  assert control and all(row["train/grad_norm/kd"] == 0 for row in control)
  assert all(row["train/grad_norm/task"] > 0 for row in pkd + control)
