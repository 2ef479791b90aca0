"""Summary of a comparison run: mean and standard error over runs, paired deltas, files.

A comparison's `results` dict (JSON-serialisable) holds `dataset`, `task`, `metrics` (names,
in display order), optionally `protocol` and `scoring` (how the test metrics were taken),
`baseline` (the method deltas are taken against) and `runs`: one entry per
run (one subject-independent fold and one seed) with `run`, `fold`, `seed` and `methods`,
a mapping `method -> {metric: score}`. A method may be missing from some runs. A run of
methods tuned on validation (:mod:`~mtpkd_jax.comparison.tuning`) also holds `tuning`:
`method -> {"picked": candidate, "candidates": {candidate: {"validation", "test"}}}`; its
`methods` hold each tuned method's picked candidate's scores.
"""

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtpkd_jax.comparison import tuning
from mtpkd_jax.train.metrics import mean_and_stderr

CSV_FIELDS = (
  "method",
  "metric",
  "mean",
  "stderr",
  "delta",
  "delta_stderr",
  "runs",
  "delta_runs",
  "wins",
)
# Metrics where a smaller value is better; every other metric is better larger.
LOWER_IS_BETTER = frozenset({"mae"})


def _mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
  """`mean_and_stderr` that gives `(nan, nan)` for no values instead of raising."""
  if not values:
    return math.nan, math.nan
  return mean_and_stderr(values)


def _method_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
  """Method names in the order they first appear over the runs."""
  return list(dict.fromkeys(name for run in runs for name in run["methods"]))


def summarize(results: Mapping[str, Any]) -> list[dict[str, Any]]:
  """Per-method mean and standard error over runs, and paired differences to the baseline.

  The difference to the baseline is averaged over the runs that hold both methods (same
  fold and seed), and its standard error is that of these paired per-run differences, so
  fold-to-fold variation common to both methods cancels. `wins` counts the paired runs in
  which the method is strictly better than the baseline (smaller for `LOWER_IS_BETTER`).

  Args:
    results: A comparison's results dict (see the module docstring).

  Returns:
    One row per method, in order of first appearance: `{"method": str, "runs": int,
    "metrics": {metric: {"mean", "stderr", "delta", "delta_stderr": float,
    "delta_runs", "wins": int}}}`, and for a tuned method `"picked": {candidate: runs}`
    (:func:`~mtpkd_jax.comparison.tuning.picked_counts`). A standard error over a single run
    is NaN; so are the mean and delta of a metric with no values.

  Raises:
    ValueError: There are no runs, or the baseline method is in none of them.
  """
  runs, baseline = results["runs"], results["baseline"]
  if not runs:
    raise ValueError("The results hold no runs.")
  names = _method_names(runs)
  if baseline not in names:
    raise ValueError(f"Baseline {baseline!r} is in no run; methods are {names}.")
  rows = []
  for name in names:
    scored = [run["methods"] for run in runs if name in run["methods"]]
    paired = [methods for methods in scored if baseline in methods]
    row_metrics = {}
    for metric in results["metrics"]:
      values = [methods[name][metric] for methods in scored if metric in methods[name]]
      differences = [
        methods[name][metric] - methods[baseline][metric]
        for methods in paired
        if metric in methods[name] and metric in methods[baseline]
      ]
      mean, stderr = _mean_and_stderr(values)
      delta, delta_stderr = _mean_and_stderr(differences)
      sign = -1 if metric in LOWER_IS_BETTER else 1
      row_metrics[metric] = {
        "mean": mean,
        "stderr": stderr,
        "delta": delta,
        "delta_stderr": delta_stderr,
        "delta_runs": len(differences),
        "wins": sum(sign * d > 0 for d in differences),
      }
    row = {"method": name, "runs": len(scored), "metrics": row_metrics}
    if picked := tuning.picked_counts(runs, name):
      row["picked"] = picked
    rows.append(row)
  return rows


def format_picked(picked: Mapping[str, int]) -> str:
  """`pkd:beta=1.0 (3/5), pkd (2/5)`: the candidates picked, most often first; `-` for none."""
  total = sum(picked.values())
  order = sorted((c for c in picked if picked[c]), key=lambda c: -picked[c])  # Stable on ties.
  return ", ".join(f"{c} ({picked[c]}/{total})" for c in order) or "-"


def format_stat(value: float, stderr: float, sign: bool = False) -> str:
  """`0.812 ± 0.014` (3 decimals); `n/a` for NaN; a leading sign for differences."""
  mean = "n/a" if math.isnan(value) else f"{value:{'+' if sign else ''}.3f}"
  error = "n/a" if math.isnan(stderr) else f"{stderr:.3f}"
  return f"{mean} ± {error}"


def markdown_table(results: Mapping[str, Any]) -> str:
  """Markdown table of `summarize(results)`, under a line saying what the numbers are.

  Columns: the method, each metric's mean ± standard error, each metric's paired
  difference to the baseline (`Δ <metric> vs <baseline>`, with the runs it wins out of the
  paired runs), the method's number of runs and, when methods were tuned on validation,
  `picked (runs)`: the candidates each tuned method picked and in how many runs.

  Args:
    results: A comparison's results dict (see the module docstring).

  Returns:
    The header line, a blank line and the table, ending in a newline.
  """
  metrics, baseline, runs = results["metrics"], results["baseline"], results["runs"]
  folds = len({run["fold"] for run in runs})
  seeds = len({run["seed"] for run in runs})
  header_line = (
    f"**{results['dataset']}** ({results['task']}"
    + (f", {results['protocol']}" if "protocol" in results else "")
    + (f", scored per {results['scoring']}" if "scoring" in results else "")
    + f"): mean ± standard error over {len(runs)} runs (each one fold and one seed: "
    f"{folds} folds, {seeds} seeds); "
    f"Δ is the mean paired per-run difference to `{baseline}` (same fold and seed), with the "
    "runs won out of the paired runs in brackets; n/a where a single run gives no standard "
    "error."
  )
  tuned = any(run.get("tuning") for run in runs)
  if tuned:
    header_line += (
      " A tuned method's row holds, in each run, the test scores of its candidate with the "
      "best validation score (`config.tune`; ties: the first candidate); `picked (runs)` says "
      "which candidates were picked in how many runs."
    )
  columns = ["method", *metrics, *(f"Δ {metric} vs {baseline}" for metric in metrics), "runs"]
  columns += ["picked (runs)"] if tuned else []
  lines = [header_line, "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
  for row in summarize(results):
    stats = row["metrics"]
    cells = [
      row["method"],
      *(format_stat(stats[metric]["mean"], stats[metric]["stderr"]) for metric in metrics),
      *(
        format_stat(stats[metric]["delta"], stats[metric]["delta_stderr"], sign=True)
        + f" ({stats[metric]['wins']}/{stats[metric]['delta_runs']})"
        for metric in metrics
      ),
      str(row["runs"]),
      *([format_picked(row.get("picked", {}))] if tuned else []),
    ]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def strict_json(value: Any) -> Any:
  """`value` with floats as Python floats and NaN/infinity as None, for standard JSON."""
  if isinstance(value, Mapping):
    return {key: strict_json(item) for key, item in value.items()}
  if isinstance(value, list | tuple):
    return [strict_json(item) for item in value]
  if isinstance(value, float | np.floating):
    return float(value) if math.isfinite(value) else None
  return value


def write_reports(results: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
  """Writes `results.md`, `results.csv` and `results.json` into `out_dir` (created).

  The CSV has one row per method and metric with the columns `CSV_FIELDS` (NaN written as
  `nan`); the JSON holds the raw results plus `"summary": summarize(results)`, with NaN
  written as null.

  Args:
    results: A comparison's results dict (see the module docstring).
    out_dir: Directory for the three files.

  Returns:
    The written paths under the keys `"markdown"`, `"csv"` and `"json"`.
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  summary = summarize(results)
  paths = {
    "markdown": out_dir / "results.md",
    "csv": out_dir / "results.csv",
    "json": out_dir / "results.json",
  }
  paths["markdown"].write_text(markdown_table(results))
  with open(paths["csv"], "w", newline="") as file:
    writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in summary:
      for metric, stats in row["metrics"].items():
        writer.writerow({"method": row["method"], "metric": metric, "runs": row["runs"]} | stats)
  payload = strict_json({**results, "summary": summary})
  paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
  return paths
