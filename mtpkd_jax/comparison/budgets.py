"""Data-efficiency curves: one comparison per label budget, tabulated side by side.

``config.label_budgets`` (e.g. ``(5, 10, 30, 100, 0)``; ``0``: every label) trains one
comparison (:func:`mtpkd_jax.comparison.runner.run`) per budget, with ``config.label_budget``
set to it, in ``<workdir>/budget_<b>`` (``budget_all`` for 0), smallest budget first. The
budgets share folds, seeds and validation and test examples, and the labelled training
examples of a budget are among those of every larger one
(:func:`mtpkd_jax.data.splits.label_budget`). :func:`run` then writes ``budgets.md``,
``budgets.json`` and ``budget_differences.png`` into the workdir: per budget, each method's
score and its paired difference to the control (``config.control`` when it is one of the
methods, else ``config.baseline``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from mtpkd_jax.comparison import plots, report, runner
from mtpkd_jax.methods import evaluation
from mtpkd_jax.train import distributed


def budget_dir(budget: int) -> str:
  """The folder of a budget's comparison in the sweep's workdir."""
  return "budget_all" if budget == 0 else f"budget_{budget}"


def ordered(budgets: Sequence[int]) -> list[int]:
  """``budgets`` without repeats, smallest first and ``0`` (every label) last."""
  return sorted(set(budgets), key=lambda b: (b == 0, b))


def reference(config: ml_collections.ConfigDict) -> str:
  """The method the differences are taken against: the control if trained, else the baseline.

  That is ``config.control`` when it is one of ``config.methods``, else ``config.baseline``.
  """
  control = config.get("control")
  return control if control in config.methods else config.baseline


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
  """Trains the comparison of every budget of ``config.label_budgets``; writes the table.

  Each budget's comparison checks its settings and runs before it touches its folder
  (:func:`~mtpkd_jax.comparison.runner.run`), and resumes like any comparison.

  Returns:
    A dict of the score ``metric``, the ``reference`` method and the ``budgets``, one entry
    per budget (its ``budget``, ``label_budget``, the ``train_examples`` of each run and the
    ``summary`` with differences to the reference,
    :func:`~mtpkd_jax.comparison.report.summarize`), and the written ``files`` (in process 0
    only).

  Raises:
    ValueError: if ``config.label_budgets`` is empty, and as
      :func:`~mtpkd_jax.comparison.runner.run` does.
  """
  if not config.label_budgets:
    raise ValueError("`config.label_budgets` is empty: set e.g. --config.label_budgets='(5, 0)'.")
  workdir = Path(workdir)
  task = runner.open_dataset(config).schema.task
  metric = evaluation.score_metric(task, config.metrics)
  entries = []
  for budget in ordered(config.label_budgets):
    budget_config = ml_collections.ConfigDict(config.to_dict())
    budget_config.label_budget, budget_config.label_budgets = budget, ()
    results = runner.run(budget_config, workdir / budget_dir(budget))
    splits = sorted((workdir / budget_dir(budget)).glob("run*/split.json"))
    entries.append(
      {
        "budget": "all" if budget == 0 else budget,
        "label_budget": budget,
        "train_examples": [len(json.loads(p.read_text())["train"]) for p in splits],
        "summary": report.summarize({**results, "baseline": reference(config)}),
        "dataset": results["dataset"],
        "task": results["task"],
      }
    )
  sweep = {"metric": metric, "reference": reference(config), "budgets": entries}
  if distributed.is_main():
    sweep["files"] = {k: str(v) for k, v in write_reports(sweep, workdir).items()}
  return sweep


def markdown_table(sweep: Mapping[str, Any]) -> str:
  """Per method and budget: the score (mean ± s.e.) and Δ vs the reference (paired).

  Args:
    sweep: what :func:`run` returns.

  Returns:
    A header line, a blank line and the table, ending in a newline.
  """
  metric, ref, entries = sweep["metric"], sweep["reference"], sweep["budgets"]
  first = entries[0]
  per = "class" if first["task"] == "classification" else "subject"
  header = (
    f"**{first['dataset']}**: {metric} by labelled training examples per {per} "
    f"(mean ± standard error over the runs); Δ is the mean paired per-run difference to "
    f"`{ref}` (same fold, seed and labelled examples) ± its standard error, with the runs "
    "won out of the paired runs in brackets. Training examples per run: "
    + "; ".join(f"{e['budget']}: {_range(e['train_examples'])}" for e in entries)
    + "."
  )
  columns = ["method", *(f"{e['budget']} per {per}" for e in entries)]
  lines = [header, "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
  methods = list(dict.fromkeys(row["method"] for e in entries for row in e["summary"]))
  for method in methods:
    cells = [method]
    for entry in entries:
      row = next((r for r in entry["summary"] if r["method"] == method), None)
      if row is None:
        cells.append("n/a")
        continue
      stats = row["metrics"][metric]
      cell = report.format_stat(stats["mean"], stats["stderr"])
      if method != ref:
        delta = report.format_stat(stats["delta"], stats["delta_stderr"], sign=True)
        cell += f", Δ {delta} ({stats['wins']}/{stats['delta_runs']})"
      cells.append(cell)
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _range(values: Sequence[int]) -> str:
  return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def write_reports(sweep: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
  """Writes ``budgets.md``, ``budgets.json`` and ``budget_differences.png`` into ``out_dir``."""
  out_dir = Path(out_dir)
  paths = {
    "markdown": out_dir / "budgets.md",
    "json": out_dir / "budgets.json",
    "plot": out_dir / "budget_differences.png",
  }
  paths["markdown"].write_text(markdown_table(sweep))
  payload = report.strict_json(sweep)
  paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
  plots.budget_differences(sweep, paths["plot"])
  return paths
