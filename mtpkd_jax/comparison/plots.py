"""Figures of a comparison run: learning curves, paired differences, similarity, plans.

And of a label-budget sweep: the paired differences against the budget.

Each function draws on its own `matplotlib.figure.Figure` (no pyplot state), writes one PNG
with the Agg renderer and returns its path; parent directories are created.
"""

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(figure: Figure, out_path: str | Path) -> Path:
  """Renders `figure` to a PNG at `out_path` with Agg."""
  out_path = Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  FigureCanvasAgg(figure).print_png(out_path)
  return out_path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
  """Parses a JSON-lines metric log, one dict per line.

  Lines that do not parse (a last line cut off by a killed run, or such a fragment followed
  by what a resumed run appended) are skipped with a `RuntimeWarning`.

  Args:
    path: The log, e.g. a `MetricWriter`'s `metrics.jsonl`.

  Returns:
    The parsed lines in file order; `[]` if the file does not exist.
  """
  path = Path(path)
  if not path.exists():
    return []
  lines, broken = [], []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      lines.append(json.loads(line))
    except json.JSONDecodeError:
      broken.append(number)
  if broken:
    warnings.warn(f"{path}: skipped unparsable lines {broken}.", RuntimeWarning, stacklevel=2)
  return lines


def _series(lines: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """Steps and values of `key`, sorted by step; a repeated step keeps its later value.

  A resumed run replays steps after its last checkpoint, and the later line is the one that
  matches the checkpoint that was kept.
  """
  by_step = {int(line["step"]): float(line[key]) for line in lines if key in line}
  steps = np.array(sorted(by_step), dtype=np.int64)
  return steps, np.array([by_step[step] for step in steps], dtype=np.float64)


def learning_curves(
  logs: Mapping[str, Sequence[Mapping[str, Any]]],
  out_path: str | Path,
  train_key: str = "train/loss",
  val_key: str = "val/score",
) -> Path:
  """One row per stage: training loss (left axis) and validation score (right axis).

  Args:
    logs: Stage name -> the stage's parsed metric log (`read_jsonl`); each line is
      `{"step": int, <name>: float, ...}` and may hold only training or only validation
      values.
    out_path: Where to write the PNG.
    train_key: Name of the training loss in the log lines.
    val_key: Name of the validation score in the log lines.

  Returns:
    `out_path`.

  Raises:
    ValueError: `logs` is empty.
  """
  if not logs:
    raise ValueError("learning_curves needs at least one stage.")
  figure = Figure(figsize=(8, 2.8 * len(logs)), layout="constrained")
  figure.suptitle("Learning curves")
  axes = figure.subplots(len(logs), 1, squeeze=False)[:, 0]
  for ax, (stage, lines) in zip(axes, logs.items(), strict=True):
    ax.set_title(stage)
    ax.set_xlabel("step")
    ax.set_ylabel(train_key, color="C0")
    ax.plot(*_series(lines, train_key), color="C0", label=train_key)
    val_ax = ax.twinx()
    val_ax.set_ylabel(val_key, color="C1")
    val_ax.plot(*_series(lines, val_key), color="C1", marker="o", label=val_key)
  return _save(figure, out_path)


def paired_differences(
  summary: Sequence[Mapping[str, Any]], metric: str, baseline: str, out_path: str | Path
) -> Path:
  """Each method's mean paired difference to the baseline, ± standard error, with its wins.

  Args:
    summary: `report.summarize(results)`: one row per method.
    metric: The metric drawn.
    baseline: The method the differences are taken against (left out of the plot).
    out_path: Where to write the PNG.

  Returns:
    `out_path`.

  Raises:
    ValueError: `metric` is not in the summary, or no method but the baseline is.
  """
  rows = [row for row in summary if row["method"] != baseline]
  if not rows:
    raise ValueError(f"paired_differences needs a method besides the baseline {baseline!r}.")
  if any(metric not in row["metrics"] for row in rows):
    raise ValueError(f"Metric {metric!r} is not in the summary: {list(rows[0]['metrics'])}.")
  stats = [row["metrics"][metric] for row in rows]
  delta = np.array([s["delta"] for s in stats], dtype=np.float64)
  error = np.nan_to_num(np.array([s["delta_stderr"] for s in stats], dtype=np.float64))
  y = np.arange(len(rows))[::-1]
  figure = Figure(figsize=(7, 1.2 + 0.4 * len(rows)), layout="constrained")
  ax = figure.subplots()
  ax.barh(y, delta, xerr=error, color=np.where(delta >= 0, "C2", "C3"), capsize=3)
  ax.axvline(0.0, color="black", linewidth=0.8)
  ax.set_yticks(y, [row["method"] for row in rows])
  for yi, d, e, s in zip(y, delta, error, stats, strict=True):
    ax.annotate(
      f"{s['wins']}/{s['delta_runs']}",
      (d + np.copysign(e, d), yi),
      xytext=(np.copysign(4, d), 0),
      textcoords="offset points",
      ha="left" if d >= 0 else "right",
      va="center",
      fontsize=8,
    )
  ax.set_xlabel(f"Δ {metric} vs {baseline} (paired, ± s.e.; runs won)")
  ax.margins(x=0.25)
  return _save(figure, out_path)


def budget_differences(sweep: Mapping[str, Any], out_path: str | Path) -> Path:
  """Each method's paired difference to the reference against the label budget, ± s.e.

  Args:
    sweep: a label-budget sweep (:func:`mtpkd_jax.comparison.budgets.run`).
    out_path: Where to write the PNG.

  Returns:
    `out_path`.
  """
  metric, ref, entries = sweep["metric"], sweep["reference"], sweep["budgets"]
  methods = [
    m for m in dict.fromkeys(row["method"] for e in entries for row in e["summary"]) if m != ref
  ]
  x = np.arange(len(entries))
  figure = Figure(figsize=(7, 4), layout="constrained")
  ax = figure.subplots()
  for i, method in enumerate(methods):
    rows = [next((r for r in e["summary"] if r["method"] == method), None) for e in entries]
    stats = [r["metrics"][metric] if r else {"delta": np.nan, "delta_stderr": np.nan} for r in rows]
    delta = np.array([s["delta"] for s in stats], dtype=np.float64)
    error = np.nan_to_num(np.array([s["delta_stderr"] for s in stats], dtype=np.float64))
    offset = (i - (len(methods) - 1) / 2) * 0.06
    ax.errorbar(x + offset, delta, yerr=error, marker="o", capsize=3, label=method)
  ax.axhline(0.0, color="black", linewidth=0.8)
  ax.set_xticks(x, [str(e["budget"]) for e in entries])
  ax.set_xlabel("labelled training examples per class (or subject)")
  ax.set_ylabel(f"Δ {metric} vs {ref} (paired, ± s.e.)")
  ax.legend(fontsize=8)
  return _save(figure, out_path)


def similarity_matrices(
  teacher: np.ndarray,
  student: np.ndarray,
  out_path: str | Path,
  title: str = "Sample similarity matrices",
) -> Path:
  """Teacher and student similarity matrices on one colour scale, and their difference.

  Args:
    teacher: Teacher similarities, shape `[batch, batch]`.
    student: Student similarities, shape `[batch, batch]`.
    out_path: Where to write the PNG.
    title: Figure title.

  Returns:
    `out_path`.

  Raises:
    ValueError: The matrices are not square or differ in shape.
  """
  teacher, student = np.asarray(teacher, np.float64), np.asarray(student, np.float64)
  if teacher.ndim != 2 or teacher.shape[0] != teacher.shape[1] or student.shape != teacher.shape:
    raise ValueError(
      f"Need two square matrices of one shape, got {teacher.shape}, {student.shape}."
    )
  difference = student - teacher
  low, high = min(teacher.min(), student.min()), max(teacher.max(), student.max())
  spread = max(np.abs(difference).max(), np.finfo(np.float64).tiny)
  figure = Figure(figsize=(13, 4.6), layout="constrained")
  figure.suptitle(title)
  teacher_ax, student_ax, difference_ax = figure.subplots(1, 3)
  for ax, matrix, name in ((teacher_ax, teacher, "teacher"), (student_ax, student, "student")):
    image = ax.imshow(matrix, vmin=low, vmax=high, cmap="viridis")
    ax.set(title=name, xlabel="sample", ylabel="sample")
  figure.colorbar(image, ax=[teacher_ax, student_ax], label="similarity")
  image = difference_ax.imshow(difference, vmin=-spread, vmax=spread, cmap="RdBu_r")
  difference_ax.set(title="student - teacher", xlabel="sample", ylabel="sample")
  figure.colorbar(image, ax=difference_ax, label="difference")
  return _save(figure, out_path)


def transport_plan(plan: np.ndarray, out_path: str | Path, title: str = "Transport plan") -> Path:
  """Heat map of a transport plan with its row and column marginals as bars on the edges.

  Args:
    plan: Transport plan, shape `[n, m]`: rows are student samples, columns teacher
      samples.
    out_path: Where to write the PNG.
    title: Figure title; the plan's total mass is appended.

  Returns:
    `out_path`.

  Raises:
    ValueError: `plan` is not a matrix.
  """
  plan = np.asarray(plan, np.float64)
  if plan.ndim != 2:
    raise ValueError(f"plan must have shape [n, m], got {plan.shape}.")
  rows, columns = plan.sum(axis=1), plan.sum(axis=0)
  figure = Figure(figsize=(7, 6), layout="constrained")
  figure.suptitle(f"{title} (total mass {plan.sum():.3g})")
  grid = figure.add_gridspec(2, 3, width_ratios=(4, 1, 0.2), height_ratios=(1, 4))
  heat_ax = figure.add_subplot(grid[1, 0])
  column_ax = figure.add_subplot(grid[0, 0], sharex=heat_ax)
  row_ax = figure.add_subplot(grid[1, 1], sharey=heat_ax)
  image = heat_ax.imshow(plan, aspect="auto", cmap="magma", interpolation="nearest")
  heat_ax.set(xlabel="teacher sample", ylabel="student sample")
  figure.colorbar(image, cax=figure.add_subplot(grid[1, 2]), label="mass")
  column_ax.bar(np.arange(plan.shape[1]), columns, width=1.0, color="C0", edgecolor="white")
  column_ax.set(title="column marginal (teacher)", ylabel="mass")
  column_ax.tick_params(labelbottom=False)
  row_ax.barh(np.arange(plan.shape[0]), rows, height=1.0, color="C1", edgecolor="white")
  row_ax.set(title="row marginal\n(student)", xlabel="mass")
  row_ax.tick_params(labelleft=False)
  return _save(figure, out_path)
