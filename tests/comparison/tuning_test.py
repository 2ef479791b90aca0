"""Methods tuned on validation: the selection against a table written here, and the refusals."""

import math

import pytest

from experiments.configs import synthetic_mtpkdot
from mtpkd_jax.comparison import report, settings, tuning

CONTROL = "pkd:beta=0"
METHODS = ("visual_only", CONTROL, "pkd", "mt_pkdot")
TUNE = {
  CONTROL: (CONTROL, "pkd:beta=0,lr_scale=3.0"),
  "pkd": ("pkd:beta=0.5", "pkd:beta=1.0"),
  "mt_pkdot": ("mt_pkdot", "mt_pkdot:anchors=most"),
}
# Two runs by hand: per candidate, the validation score its stage kept and the test accuracy.
# Run 0: the control's faster rate, PKD's beta=1.0 and MT-PKDOT's default validate best; the
# test scores rank them otherwise (a pick on test, or of the worst, gives other rows).
# Run 1: MT-PKDOT's two candidates tie on validation (the first is picked), PKD's are
# picked the other way round, and the control's faster rate diverged (NaN: never picked).
VALIDATION = [
  {
    CONTROL: 0.70,
    "pkd:beta=0,lr_scale=3.0": 0.75,
    "pkd:beta=0.5": 0.71,
    "pkd:beta=1.0": 0.74,
    "mt_pkdot": 0.80,
    "mt_pkdot:anchors=most": 0.78,
  },
  {
    CONTROL: 0.72,
    "pkd:beta=0,lr_scale=3.0": math.nan,
    "pkd:beta=0.5": 0.76,
    "pkd:beta=1.0": 0.73,
    "mt_pkdot": 0.77,
    "mt_pkdot:anchors=most": 0.77,
  },
]
TEST = [
  {
    "visual_only": 0.60,
    CONTROL: 0.66,
    "pkd:beta=0,lr_scale=3.0": 0.62,
    "pkd:beta=0.5": 0.69,
    "pkd:beta=1.0": 0.64,
    "mt_pkdot": 0.61,
    "mt_pkdot:anchors=most": 0.68,
  },
  {
    "visual_only": 0.63,
    CONTROL: 0.65,
    "pkd:beta=0,lr_scale=3.0": 0.50,
    "pkd:beta=0.5": 0.67,
    "pkd:beta=1.0": 0.70,
    "mt_pkdot": 0.66,
    "mt_pkdot:anchors=most": 0.71,
  },
]
# What each run must report, read off the tables above by hand.
PICKED = [
  {CONTROL: "pkd:beta=0,lr_scale=3.0", "pkd": "pkd:beta=1.0", "mt_pkdot": "mt_pkdot"},
  {CONTROL: CONTROL, "pkd": "pkd:beta=0.5", "mt_pkdot": "mt_pkdot"},
]
ROWS = [
  {"visual_only": 0.60, CONTROL: 0.62, "pkd": 0.64, "mt_pkdot": 0.61},
  {"visual_only": 0.63, CONTROL: 0.65, "pkd": 0.67, "mt_pkdot": 0.66},
]


def _select(run):
  test = {name: {"accuracy": value} for name, value in TEST[run].items()}
  return tuning.select(METHODS, TUNE, test, VALIDATION[run])


def test_trained_lists_every_candidate_once_in_its_methods_place():
  assert tuning.trained(METHODS, TUNE) == (
    "visual_only",
    CONTROL,
    "pkd:beta=0,lr_scale=3.0",
    "pkd:beta=0.5",
    "pkd:beta=1.0",
    "mt_pkdot",
    "mt_pkdot:anchors=most",
  )
  # An entry for a method the run leaves out is not used.
  assert tuning.trained(("visual_only", "pkd"), {"mt_pkdot": ("mt_pkdot",)}) == (
    "visual_only",
    "pkd",
  )


@pytest.mark.parametrize("run", [0, 1])
def test_each_tuned_row_is_the_test_score_of_the_candidate_best_on_validation(run):
  rows, record = _select(run)
  assert list(rows) == list(METHODS)
  assert {name: row["accuracy"] for name, row in rows.items()} == ROWS[run]
  assert {name: r["picked"] for name, r in record.items()} == PICKED[run]
  # Every candidate's scores are kept.
  assert record["pkd"]["candidates"]["pkd:beta=0.5"] == {
    "validation": VALIDATION[run]["pkd:beta=0.5"],
    "test": {"accuracy": TEST[run]["pkd:beta=0.5"]},
  }


def test_a_tie_on_validation_picks_the_first_candidate_and_nan_loses():
  assert tuning.pick(("a", "b"), {"a": 0.5, "b": 0.5}) == "a"
  assert tuning.pick(("b", "a"), {"a": 0.5, "b": 0.5}) == "b"
  assert tuning.pick(("a", "b"), {"a": math.nan, "b": 0.1}) == "b"
  assert tuning.pick(("a", "b"), {"a": math.nan, "b": math.nan}) == "a"
  with pytest.raises(ValueError, match="No candidates"):
    tuning.pick((), {})


def _results():
  runs = []
  for run in range(2):
    rows, record = _select(run)
    runs.append({"run": run, "fold": run, "seed": run, "methods": rows, "tuning": record})
  return {
    "dataset": "d",
    "task": "classification",
    "metrics": ["accuracy"],
    "baseline": CONTROL,
    "runs": runs,
  }


def test_the_paired_differences_are_between_the_tuned_rows_run_by_run():
  summary = {row["method"]: row for row in report.summarize(_results())}
  pkd = summary["pkd"]["metrics"]["accuracy"]
  # PKD 0.64 and 0.67 against the tuned control's 0.62 and 0.65: +0.02 in both runs.
  assert pkd["mean"] == pytest.approx(0.655)
  assert pkd["delta"] == pytest.approx(0.02)
  assert pkd["wins"] == 2
  assert summary["pkd"]["picked"] == {"pkd:beta=0.5": 1, "pkd:beta=1.0": 1}
  assert summary["mt_pkdot"]["picked"] == {"mt_pkdot": 2, "mt_pkdot:anchors=most": 0}
  assert "picked" not in summary["visual_only"]


def test_the_table_says_which_candidates_each_tuned_method_picked():
  table = report.markdown_table(_results())
  assert "| runs | picked (runs) |" in table
  assert "best validation score" in table
  cells = {
    line.split("|")[1].strip(): line.split("|")[-2].strip()
    for line in table.splitlines()
    if line.startswith("| ") and not line.startswith("| method")
  }
  assert cells["mt_pkdot"] == "mt_pkdot (2/2)"
  assert cells["pkd"] == "pkd:beta=0.5 (1/2), pkd:beta=1.0 (1/2)"
  assert cells[CONTROL] == "pkd:beta=0 (1/2), pkd:beta=0,lr_scale=3.0 (1/2)"
  assert cells["visual_only"] == "-"
  # Without tuning, no such column.
  untuned = _results()
  for run in untuned["runs"]:
    del run["tuning"]
  assert "picked" not in report.markdown_table(untuned)


def _config(**tune):
  config = synthetic_mtpkdot.get_config("pain_binary,smoke")
  config.tune = tune
  return config


@pytest.mark.parametrize(
  "tune, message",
  [
    ({"visual_only": ("visual_only",)}, r"`config.tune.visual_only`: 'visual_only' is a unimodal"),
    ({"joint_teacher": ("joint_teacher",)}, r"`config.tune.joint_teacher`: .* teacher model"),
    ({"mt_pkdto": ("mt_pkdot",)}, r"`config.tune.mt_pkdto`: Unknown method 'mt_pkdto'"),
    ({"pkd": ()}, r"`config.tune.pkd` must be a non-empty tuple of distinct variant names"),
    ({"pkd": "pkd:beta=1.0"}, r"`config.tune.pkd` must be a non-empty tuple"),
    ({"pkd": ("pkd", "pkd")}, r"`config.tune.pkd` must be a non-empty tuple of distinct"),
    ({"pkd": ("pkd", "pkdot")}, r"`config.tune.pkd`: candidate 'pkdot' is not a variant of 'pkd'"),
    (
      {CONTROL: (CONTROL, "pkd:gamma=1.0")},
      r"`config.tune.pkd:beta=0`: candidate 'pkd:gamma=1.0': .*pkd has no parameter 'gamma'",
    ),
    (
      {"mt_pkdot": ("mt_pkdot", "mt_pkdot:anchors=some")},
      r"`config.tune.mt_pkdot`: candidate 'mt_pkdot:anchors=some': .*anchors",
    ),
  ],
)
def test_bad_candidates_are_refused_naming_the_tuned_method(tune, message):
  with pytest.raises(ValueError, match=message):
    settings.check_config(_config(**tune))


def test_an_entry_for_a_method_not_run_is_not_used_nor_checked():
  config = _config(pkdot=("pkdot", "pkdot:anchors=some"))
  config.methods = ("visual_only", "pkd")
  config.baseline = "visual_only"
  settings.check_config(config)


def test_the_shipped_configs_grids_pass_their_checks():
  for arg in ("pain_binary", "pain_binary,smoke"):
    config = synthetic_mtpkdot.get_config(arg)
    assert config.tune, arg
    assert config.control in config.tune, arg
    settings.check_config(config)
