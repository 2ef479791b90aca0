"""The OT benchmark's run, table, plot, figures and targets.

Each round samples every implementation of a row once, and the bound's kernel, one right
after the other (see :func:`mtpkd_jax.bench.timing.measure`), so a ratio within a round is not
moved by the machine's speed drifting between rounds (as the paired differences of the
comparison tables). ``x_fused`` is the median over rounds of ``time / fused time`` for the
same case, size and direction; ``bound`` the median over rounds of ``counted exponentials /
(time · R)``, with ``R`` the exp rate of :func:`mtpkd_jax.bench.timing.exp_probe` in the
round: 100 % is exp-bound throughput.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax

from mtpkd_jax.bench import ot_loss_runners, ot_solver_runners, timing
from mtpkd_jax.ot import sinkhorn as sinkhorn_lib

CASES = ot_loss_runners.CASES + ot_solver_runners.CASES
VERSIONS = {"jax": "jax", "ott-jax": "ott", "pot": "ot", "torch": "torch", "geomloss": "geomloss"}
# ott-jax's rows: fused must be at least as fast as each of them.
OTT_IMPLS = ("ott_backend", "ott_plain", "ott")


def add_ratios(results: list[timing.Measurement]) -> None:
  """Fills ``ratio_to_fused`` (paired by round) in place."""
  fused = {
    (r.case, tuple(sorted(r.size.items())), r.direction): r.times_s
    for r in results
    if r.impl == "fused"
  }
  for r in results:
    reference = fused.get((r.case, tuple(sorted(r.size.items())), r.direction))
    r.ratio_to_fused = None if reference is None else timing.paired_ratio(r.times_s, reference)


def format_table(results: list[timing.Measurement], geomloss_missing: str | None) -> str:
  """The stdout table (one block per case).

  Args:
    results: measurements with ratios filled in.
    geomloss_missing: why GeomLoss did not run, or ``None``; said in the gradient column.
  """
  grad_na = "n/a" if geomloss_missing is None else "no GL"
  lines = [
    "x_fused = median over rounds of time / fused time in the same round, same case, size "
    "and direction (>1: slower than fused);",
    "bound = median over rounds of counted exps / (time x the round's exp rate);",
    "grad vs GL = |g_fused - g_GeomLoss| / |g_GeomLoss| of d loss / d student, "
    "Anneal(blur, scaling)"
    + ("" if geomloss_missing is None else f" ({grad_na}: {geomloss_missing})")
    + ".",
  ]
  header = (
    f"{'case':<7}{'size':<22}{'impl':<12}{'dir':<8}{'median ms':>11}{'compile s':>10}"
    f"{'x_fused':>9}{'bound %':>9}{'iters':>7}{'value':>12}{'mem MB':>9}{'grad vs GL':>12}"
  )
  for case in CASES:
    rows = [r for r in results if r.case == case]
    if not rows:
      continue
    lines += ["", header, "-" * len(header)]
    for r in rows:
      size = ",".join(f"{k}={v}" for k, v in r.size.items())
      compile_s = "" if r.compile_s is None else f"{r.compile_s:.2f}"
      ratio = "" if r.ratio_to_fused is None else f"{r.ratio_to_fused:.2f}"
      memory = "" if r.memory_bytes is None else f"{r.memory_bytes / 2**20:.2f}"
      grad = ""
      if r.impl == "fused" and r.direction == "fwd+bwd":
        grad = grad_na if r.grad_vs_geomloss is None else f"{r.grad_vs_geomloss:.1e}"
      lines.append(
        f"{case:<7}{size:<22}{r.impl:<12}{r.direction:<8}{1e3 * r.median_s:>11.2f}"
        f"{compile_s:>10}{ratio:>9}{100 * r.bound_fraction:>9.1f}{r.iterations:>7}"
        f"{r.value:>12.5g}{memory:>9}{grad:>12}"
      )
  return "\n".join(lines)


def format_memory(rows: list[dict[str, Any]]) -> str:
  """The memory section: compiled temp MB by gradient and loop length."""
  lines = ["", "fused loss fwd+bwd compiled memory (MB), by gradient and loop length:"]
  for row in rows:
    temp = row["temp_bytes"]
    lines.append(
      f"  B={row['B']} gradient={row['gradient']:<9} max_iterations={row['max_iterations']:<4}"
      f" temp={'n/a' if temp is None else f'{temp / 2**20:.1f}'}"
    )
  return "\n".join(lines)


def plot(results: list[timing.Measurement], path: str) -> None:
  """Throughput against size: loss calls/s vs ``B``; solver problems/s vs ``n``.

  One colour per implementation; line style is the direction (loss) or ``P`` (solver).
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  impls = list(dict.fromkeys(ot_loss_runners.IMPLS + ot_solver_runners.IMPLS))
  colours = dict(zip(impls, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
  styles = ("-", "--", ":", "-.")
  problems = sorted({r.size["P"] for r in results if r.case == "solver"})
  directions = ot_loss_runners.DIRECTIONS
  panels = (
    ("loss", "B", directions, lambda r: r.direction, lambda r: 1 / r.median_s, "loss calls / s"),
    ("solver", "n", problems, lambda r: r.size["P"], lambda r: r.size["P"] / r.median_s,
     "problems / s"),
  )  # fmt: skip
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for axis, (case, x_key, variants, variant_of, throughput, ylabel) in zip(
    axes, panels, strict=True
  ):
    sizes = sorted({r.size[x_key] for r in results if r.case == case})
    for impl in impls:
      for variant, style in zip(variants, styles, strict=False):
        rows = [r for r in results if (r.case, r.impl) == (case, impl) and variant_of(r) == variant]
        if rows:
          label = f"{impl} {variant}" if case == "loss" else f"{impl} P={variant}"
          axis.plot(
            [r.size[x_key] for r in rows],
            [throughput(r) for r in rows],
            style,
            color=colours[impl],
            marker="o",
            label=label,
          )
    axis.set(xscale="log", yscale="log", xlabel=x_key, ylabel=ylabel)
    axis.set_xticks(sizes, [str(v) for v in sizes], minor=False)
    axis.set_xticks([], minor=True)
    if axis.lines:
      axis.legend(fontsize=7)
    axis.grid(True, which="both", alpha=0.3)
  axes[0].set_title("MT-PKDOT loss (T teachers, k anchors), by batch B")
  axes[1].set_title("Sinkhorn alone, fixed iterations, by points n")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _find(results, case, impl, direction, **size):
  for r in results:
    if (r.case, r.impl, r.direction) == (case, impl, direction) and all(
      r.size.get(key) == value for key, value in size.items()
    ):
      return r
  return None


def figures(results: list[timing.Measurement]) -> dict[str, str]:
  """Ratios reported without a target.

  Fused's speed-up over plain ott-jax (and GeomLoss) at ``B = 128`` forward+backward, end to
  end and solve only.
  """
  out = {}
  for case, label in (("loss", "end to end"), ("solve", "solve only")):
    fused = _find(results, case, "fused", "fwd+bwd", B=128)
    for impl in ("ott_plain", "geomloss"):
      other = _find(results, case, impl, "fwd+bwd", B=128)
      if fused is not None and other is not None:
        out[f"B=128 fwd+bwd {label}: {impl} / fused"] = f"{other.ratio_to_fused:.2f}x"
  return out


def check_targets(
  results: list[timing.Measurement], memory: list[dict[str, Any]], platform: str
) -> dict[str, Any]:
  """The project's performance targets, evaluated where this run has the sizes.

  Args:
    results: measurements with ratios filled in.
    memory: rows of :func:`~mtpkd_jax.bench.ot_solver_runners.bench_memory`.
    platform: JAX's platform (``cpu``, ``gpu``, ``tpu``); the accelerator target is
      evaluated off CPU only.

  Returns:
    ``target -> {"measured": ..., "met": bool}``.
  """
  out = {}
  for impl, need in (("geomloss", 3.0), ("ott_backend", 1.0)):
    other = _find(results, "loss", impl, "fwd+bwd", B=128)
    if other is not None and other.ratio_to_fused is not None:
      speedup = other.ratio_to_fused
      out[f"loss B=128 fwd+bwd: fused >= {need:g}x {impl}"] = {
        "measured": f"{speedup:.2f}x",
        "met": speedup >= need,
      }
  against_ott = [r for r in results if r.impl in OTT_IMPLS and r.ratio_to_fused is not None]
  if against_ott:
    slowest = min(against_ott, key=lambda r: r.ratio_to_fused)
    size = ",".join(f"{k}={v}" for k, v in slowest.size.items())
    out["every row: fused at least as fast as ott-jax"] = {
      "measured": f"{len(against_ott)} rows, least x_fused {slowest.ratio_to_fused:.2f} "
      f"({slowest.case} {size} {slowest.impl} {slowest.direction})",
      "met": slowest.ratio_to_fused >= 1.0,
    }
  solver = _find(results, "solver", "fused", "fwd", n=512, P=4)
  if solver is not None:
    out["solver n=512 P=4: fused >= 50% of exp bound"] = {
      "measured": f"{100 * solver.bound_fraction:.1f}%",
      "met": solver.bound_fraction >= 0.5,
    }
  if platform != "cpu":
    speedups = [
      r.ratio_to_fused
      for r in results
      if (r.case, r.impl, r.direction) == ("loss", "ott_plain", "fwd+bwd")
      and r.size["B"] <= 512
      and r.ratio_to_fused is not None
    ]
    if speedups:
      out[f"{platform}: loss fwd+bwd B<=512, fused >= 10x ott_plain"] = {
        "measured": "/".join(f"{s:.1f}x" for s in speedups),
        "met": min(speedups) >= 10.0,
      }
  temps = {
    gradient: [row["temp_bytes"] for row in memory if row["gradient"] == gradient]
    for gradient in sinkhorn_lib.GRADIENTS
  }
  if memory and None not in temps["envelope"] + temps["unrolled"]:
    out[f"fwd+bwd B={memory[0]['B']}: envelope memory flat in iterations"] = {
      "measured": "envelope MB "
      + "/".join(f"{t / 2**20:.1f}" for t in temps["envelope"])
      + ", unrolled MB "
      + "/".join(f"{t / 2**20:.1f}" for t in temps["unrolled"]),
      "met": len(set(temps["envelope"])) == 1 and max(temps["envelope"]) < min(temps["unrolled"]),
    }
  return out


def solver_form() -> dict[str, Any]:
  """How the fused solver runs on this backend (every choice depends on it)."""
  return {
    "log_sum_exp": "one-pass" if sinkhorn_lib.one_pass_lse() else "two-pass",
    "loss_loop": "bounded scan, finished steps "
    + ("skipped" if sinkhorn_lib.skip_finished_steps() else "masked"),
    "check_every": sinkhorn_lib.check_every(),
  }


def run(config, output_dir: str) -> dict[str, Any]:
  """Runs every case, prints the table, writes ``bench_ot.json`` and ``bench_ot.png``.

  Args:
    config: sizes and repetitions, an ``ml_collections.ConfigDict`` as
      ``experiments/configs/bench_ot.py`` builds it.
    output_dir: folder for the JSON and PNG (created).

  Returns:
    The report written to the JSON file.
  """
  os.makedirs(output_dir, exist_ok=True)
  exp_rates = timing.measure_exp_rate(config.exp_size, min_sample_s=config.min_sample_s)
  skipped = ot_loss_runners.available()
  pot_available = skipped["pot"] is None
  results = []
  for case in ot_loss_runners.CASES:
    for batch in config.batch_sizes:
      results += ot_loss_runners.bench(config, case, batch, skipped)
  for problems in config.solver_problems:
    for n in config.solver_sizes:
      results += ot_solver_runners.bench(config, "solver", problems, n, pot_available)
  results += ot_solver_runners.bench(
    config, "hard", config.hard_problems, config.hard_size, pot_available
  )
  add_ratios(results)
  memory = ot_solver_runners.bench_memory(config)
  device = jax.devices()[0]
  targets = check_targets(results, memory, device.platform)
  versions = timing.versions(VERSIONS)
  report = {
    "config": config.to_dict(),
    "device": {
      "device_kind": device.device_kind,
      "platform": device.platform,
      "cpu_count": os.cpu_count(),
    },
    "versions": versions,
    "fused_solver": solver_form(),
    "exp_rate_per_s": exp_rates["compute"],
    "exp_rate_memory_bound_per_s": exp_rates["memory"],
    "implementations": {
      "loss": [i for i in ot_loss_runners.IMPLS if skipped[i] is None],
      "solver": [i for i in ot_solver_runners.IMPLS if i != "pot" or pot_available],
    },
    "skipped": {
      **{i: reason for i, reason in skipped.items() if reason is not None},
      "pot (solve)": "forward only (POT's NumPy backend has no autodiff); solve is fwd+bwd",
      "geomloss (solver, hard)": "not applicable: GeomLoss has no fixed-iteration or "
      "tolerance mode, only its annealing schedule",
    },
    "results": [dataclasses.asdict(r) for r in results],
    "memory": memory,
    "figures": figures(results),
    "targets": targets,
  }
  with open(os.path.join(output_dir, "bench_ot.json"), "w") as f:
    json.dump(report, f, indent=2)
  plot(results, os.path.join(output_dir, "bench_ot.png"))
  print(f"device: {device.platform} {device.device_kind}, {os.cpu_count()} CPUs; {versions}")
  form = report["fused_solver"]
  print(
    f"fused solver: {form['log_sum_exp']} log-sum-exp; the loss's Anneal loop a "
    f"{form['loss_loop']}; while loops (solve, Tolerance) check_every={form['check_every']}"
  )
  print(
    f"timing: per call, median of {config.repeats} samples of back-to-back calls lasting at "
    f"least {1e3 * config.min_sample_s:g} ms, after {config.warmup} warm-up calls; the "
    "implementations of a row sampled in turn, in a shuffled order"
  )
  print(
    f"measured exp rate: {exp_rates['compute'] / 1e9:.3f} Gexp/s (fused exp+row-sum, the "
    "bound, before the rows; each row's bound % uses the rate sampled in its own rounds); "
    f"{exp_rates['memory'] / 1e9:.3f} Gexp/s materialised (memory-bound, reference)"
  )
  for impl, reason in report["skipped"].items():
    print(f"skipped {impl}: {reason}")
  print(format_table(results, skipped["geomloss"]))
  print(format_memory(memory))
  for name, value in report["figures"].items():
    print(f"figure {name}: {value}")
  for target, verdict in targets.items():
    print(f"target {target}: {verdict['measured']} -> {'met' if verdict['met'] else 'NOT met'}")
  print(f"\nwrote {output_dir}/bench_ot.json and {output_dir}/bench_ot.png")
  return report
