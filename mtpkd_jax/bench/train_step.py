"""Weak scaling of the train step: MT-PKDOT's student stage and a backbone (stage 0).

Each device count runs in its own process (``python -m mtpkd_jax.bench.train_step``, the
experiment config pickled on its standard input), which sets
``--xla_force_host_platform_device_count`` before JAX starts, builds the steps on a
synthetic batch of ``per_device_batch`` examples per device and prints one JSON line per
step. The steps are the library's own: :func:`mtpkd_jax.methods.students.student_loss` and
:func:`mtpkd_jax.methods.unimodal.unimodal_loss` under
:func:`mtpkd_jax.train.step.make_train_step` and :func:`mtpkd_jax.train.parallel.data_parallel`,
on the synthetic dataset's shapes and the encoders of the experiment config the caller
passes (``experiments/bench_train.py``: ``experiments/configs/synthetic_mtpkdot.py``):

* ``student``: the MT-PKDOT student on the visual backbone's tokens, with random teacher
  embeddings and outputs (``T = 1 + privileged`` teachers) and frozen T-Nets;
* ``student_no_ot``: the same step without the structural OT loss (no
  ``structural_ot_loss`` call: neither ``L_OT`` nor ``L_cent``, nor the routing), so that
  ``ot_share`` is ``1 - t(student_no_ot) / t(student)``, the median over rounds;
* ``backbone``: stage 0, the visual encoder + head on random clips.

Each step is compiled ahead of time (compile time reported apart), called ``warmup`` times,
then the steps are timed in ``repeats`` rounds of one call each, in a shuffled order
(:func:`mtpkd_jax.bench.timing.timed_in_turn`); each step's median is reported. The OT share
pairs the two student steps' calls of a round (medians timed apart moved it between 15 % and
57 % on a loaded VM). ``efficiency = t(1) / t(N)`` at a fixed per-device batch (1 is perfect
weak scaling).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax

from mtpkd_jax.bench import timing
from mtpkd_jax.data import synthetic_affect
from mtpkd_jax.methods import context, joint, registry, students, unimodal
from mtpkd_jax.train import parallel
from mtpkd_jax.train import state as state_lib
from mtpkd_jax.train import step as step_lib

STEPS = ("student", "student_no_ot", "backbone")
_METHOD = "mt_pkdot"


def _context(config, experiment, num_devices: int, workdir: Path) -> context.Context:
  experiment = experiment.copy_and_resolve_references()
  # The release's frozen pipeline: the joint stage's T-Nets read the backbones' tokens.
  experiment.stages.joint.finetune_backbones = False
  schemas = {c.name: c.schema for c in synthetic_affect.CONFIGS}
  return context.Context(
    config=experiment,
    schema=schemas[config.dataset],
    dataset=None,
    split={},
    workdir=workdir,
    seed=0,
    mesh=parallel.make_mesh(num_devices),
  )


def _without_ot() -> registry.Method:
  """MT-PKDOT's student with the structural OT loss taken out: the task term alone."""
  method = registry.get_method(_METHOD)
  return dataclasses.replace(
    method, distill=lambda cfg, z_s, outputs_s, batch, task: ({}, {}), weights={"task": "alpha"}
  )


def _steps(ctx: context.Context, global_batch: int, seed: int = 0) -> dict:
  """``name -> (per-device step, state, global batch, frozen)`` on random inputs."""
  rng = np.random.default_rng(seed)
  visual = ctx.config.visual
  video = ctx.schema.modality(visual)
  labels = rng.integers(0, ctx.num_outputs, global_batch).astype(np.int32)
  clips = rng.integers(0, 256, (global_batch, *video.shape)).astype(video.dtype)
  backbone = unimodal.unimodal_model(ctx, visual)
  backbone_vars = backbone.init(jax.random.PRNGKey(0), clips[:1])
  tokens = np.asarray(backbone.apply(backbone_vars, clips)[1])
  num_teachers = len(ctx.modalities)
  student_batch = {
    visual: tokens,
    "teacher_z": rng.normal(size=(global_batch, num_teachers, tokens.shape[-1])),
    "teacher_out": rng.normal(size=(global_batch, num_teachers, ctx.num_outputs)),
    "y": labels,
  }
  student_batch = {k: v.astype(np.float32) if k != "y" else v for k, v in student_batch.items()}
  joint_params = joint.joint_model(ctx).init(jax.random.PRNGKey(1), [tokens[:1]] * num_teachers)
  joint_params = joint_params["params"]
  model = students.student_model(ctx)
  hallucinate = functools.partial(joint.hallucinate, ctx, joint_params)
  student_vars = model.init(jax.random.PRNGKey(2), tokens[:1], hallucinate)
  tx = optax.adam(1e-3)
  student_state = state_lib.create_train_state(model.apply, student_vars, tx)
  losses = {
    "student": students.student_loss(ctx, _METHOD, model),
    "student_no_ot": students.student_loss(ctx, _METHOD, model, method=_without_ot()),
  }
  out = {
    name: (step_lib.make_train_step(loss), student_state, student_batch, joint_params)
    for name, loss in losses.items()
  }
  backbone_state = state_lib.create_train_state(backbone.apply, backbone_vars, tx)
  backbone_loss = unimodal.unimodal_loss(ctx, visual, backbone)
  out["backbone"] = (
    step_lib.make_train_step(backbone_loss),
    backbone_state,
    {visual: clips, "y": labels},
    None,
  )
  return out


def measure_devices(config, experiment, num_devices: int) -> list[dict]:
  """Times every step of :data:`STEPS` on ``num_devices`` devices of this process.

  Args:
    config: the benchmark config (``experiments/configs/bench_train.py``).
    experiment: the experiment config whose encoders, widths and method parameters the
      steps use (``experiments/bench_train.py`` passes
      ``synthetic_mtpkdot.get_config(config.experiment)``); its backbones are frozen here.
    num_devices: devices of the ``("data",)`` mesh (at most ``jax.device_count()``).

  Returns:
    One row per step: ``step``, ``devices``, ``per_device_batch``, ``global_batch``,
    ``compile_s``, ``times_s`` (one call per round, in the same rounds for every step),
    ``median_s``, ``examples_per_s``, ``loss``.
  """
  global_batch = config.per_device_batch * num_devices
  with tempfile.TemporaryDirectory() as workdir:
    ctx = _context(config, experiment, num_devices, Path(workdir))
    built = _steps(ctx, global_batch)
  mesh = ctx.mesh
  calls, compile_s = {}, {}
  for name in STEPS:
    per_device_step, state, batch, frozen = built[name]
    step = parallel.data_parallel(per_device_step, mesh, donate_state=False)
    args = (
      parallel.replicate_on_mesh(state, mesh),
      parallel.shard_batch(batch, mesh),
      parallel.replicate_on_mesh(jax.random.PRNGKey(3), mesh),
      parallel.replicate_on_mesh(frozen, mesh),
    )
    start = time.perf_counter()
    compiled = step.lower(*args).compile()
    compile_s[name] = time.perf_counter() - start
    calls[name] = functools.partial(lambda c, a: jax.block_until_ready(c(*a)), compiled, args)
  # In rounds, so that the OT share pairs the two student steps' samples of each round.
  outs, times, _ = timing.timed_in_turn(calls, config.repeats, config.warmup)
  rows = []
  for name in STEPS:
    median = statistics.median(times[name])
    rows.append(
      {
        "step": name,
        "devices": num_devices,
        "per_device_batch": config.per_device_batch,
        "global_batch": global_batch,
        "compile_s": compile_s[name],
        "times_s": times[name],
        "median_s": median,
        "examples_per_s": global_batch / median,
        "loss": float(outs[name][1]["loss"]),
      }
    )
  return rows


def _child_env(config, num_devices: int) -> dict[str, str]:
  env = dict(os.environ)
  if config.platform == "cpu":
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={num_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
  root = str(Path(__file__).resolve().parents[2])
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  return env


def run_devices(config, experiment, num_devices: int) -> list[dict]:
  """:func:`measure_devices` in a fresh process with ``num_devices`` (fake CPU) devices."""
  proc = subprocess.run(
    [sys.executable, "-m", __name__, config.to_json(), str(num_devices)],
    # Pickled, a ConfigDict comes back as it was (JSON would turn its tuples into lists).
    input=pickle.dumps(experiment),
    env=_child_env(config, num_devices),
    capture_output=True,
    check=False,
  )
  if proc.returncode:
    raise RuntimeError(
      f"The {num_devices}-device benchmark process failed ({proc.returncode}):\n"
      f"{proc.stderr.decode(errors='replace')}"
    )
  lines = proc.stdout.decode().splitlines()
  return [json.loads(line) for line in lines if line.startswith("{")]


def summarize(rows: list[dict]) -> dict:
  """Adds ``efficiency = t(1) / t(N)`` to every row and ``ot_share`` per device count.

  ``ot_share`` is the median over rounds of ``1 - t(student_no_ot) / t(student)``, the two
  steps' ``times_s`` of one device count being sampled in the same rounds (one each a round).
  """
  one = {r["step"]: r["median_s"] for r in rows if r["devices"] == 1}
  for r in rows:
    r["efficiency"] = one[r["step"]] / r["median_s"] if r["step"] in one else None
  times = {(r["step"], r["devices"]): r["times_s"] for r in rows}
  shares = {}
  for (step, n), t_ot in times.items():
    t_no_ot = times.get(("student_no_ot", n))
    if step == "student" and t_no_ot is not None:
      shares[n] = 1.0 - timing.paired_ratio(t_no_ot, t_ot)
  return {"rows": rows, "ot_share": {str(n): s for n, s in sorted(shares.items())}}


def markdown(result: dict) -> str:
  """The rows as a table, with each device count's OT share of the student step."""
  lines = [
    "| step | devices | global batch | median step (ms) | examples/s | efficiency t1/tN "
    "| compile (s) |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r['step']} | {r['devices']} | {r['global_batch']} | {1e3 * r['median_s']:.1f} "
      f"| {r['examples_per_s']:.0f} | {r['efficiency']:.2f} | {r['compile_s']:.1f} |"
    )
  shares = ", ".join(f"{n} dev: {100 * s:.0f}%" for n, s in result["ot_share"].items())
  lines.append(f"\nStructural OT share of the student step: {shares}.")
  return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
  """Median step time and efficiency against devices, one line per step."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(10, 4))
  for name in STEPS:
    rows = [r for r in result["rows"] if r["step"] == name]
    devices = [r["devices"] for r in rows]
    ax_t.plot(devices, [1e3 * r["median_s"] for r in rows], "o-", label=name)
    ax_e.plot(devices, [r["efficiency"] for r in rows], "o-", label=name)
  ax_t.set(xlabel="devices", ylabel="median train step (ms)", xscale="log", yscale="log")
  ax_e.set(xlabel="devices", ylabel="weak-scaling efficiency t(1)/t(N)", xscale="log")
  ax_e.axhline(1.0, color="grey", lw=0.5)
  for ax in (ax_t, ax_e):
    ax.set_xticks(devices, [str(n) for n in devices], minor=False)
    ax.minorticks_off()
    ax.legend()
  fig.suptitle(f"Fixed per-device batch {result['rows'][0]['per_device_batch']}")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(config, experiment, output_dir: str | Path) -> dict:
  """Every device count of ``config``, each in its own process; writes JSON and PNG.

  Args:
    config: the benchmark config (``experiments/configs/bench_train.py``).
    experiment: the experiment config the steps are built from (:func:`measure_devices`).
    output_dir: where ``bench_train.json`` and ``bench_train.png`` go.

  Returns:
    The JSON's content: ``config``, ``machine``, and :func:`summarize`'s ``rows`` and
    ``ot_share``.
  """
  rows = []
  for num_devices in config.device_counts:
    rows += run_devices(config, experiment, num_devices)
  result = {
    "config": config.to_dict(),
    "machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "platform": config.platform},
    **summarize(rows),
  }
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  (output_dir / "bench_train.json").write_text(json.dumps(result, indent=1))
  plot(result, output_dir / "bench_train.png")
  print(markdown(result))
  print(f"Wrote {output_dir / 'bench_train.json'} and {output_dir / 'bench_train.png'}.")
  return result


if __name__ == "__main__":
  _config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
  _experiment = pickle.load(sys.stdin.buffer)
  for _row in measure_devices(_config, _experiment, int(sys.argv[2])):
    print(json.dumps(_row), flush=True)
