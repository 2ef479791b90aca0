"""Timing, compiling and memory measurement shared by the benchmarks.

Each JAX function is lowered and compiled ahead of time (compile time kept apart), called
``warmup`` times, then timed ``repeats`` times with ``block_until_ready``; the median is
reported. Implementations compared on one case are timed in rounds, one sample each per
round in a shuffled order, so that neither a change in the machine's load nor the call just
before favours one of them. With ``min_sample_s``, a sample is as many back-to-back calls as
last that long (the count set from the fastest warm-up call), and its time is per call: a
call of a millisecond that follows other work or an idle pause pays the machine's wake-up
once, which a sample of many calls spreads over all of them. Memory: JAX
``compiled.memory_analysis()`` temp + output bytes; NumPy: ``tracemalloc`` peak of one call.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def optional(module: str):
  """Imports ``module``, or returns ``None`` when it is not installed."""
  try:
    return importlib.import_module(module)
  except ImportError:
    return None


def versions(modules: dict[str, str]) -> dict[str, str | None]:
  """``label -> version`` of each ``label -> module`` (``None``: not installed)."""
  out = {}
  for label, name in modules.items():
    module = optional(name)
    out[label] = None if module is None else getattr(module, "__version__", "unknown")
  return out


def timed(
  call: Callable[[], Any], repeats: int, warmup: int, min_sample_s: float = 0.0
) -> tuple[Any, list[float]]:
  """Calls ``call`` (which must return synchronised results): ``(last output, seconds)``."""
  outs, times, _ = timed_in_turn({None: call}, repeats, warmup, min_sample_s)
  return outs[None], times[None]


def timed_in_turn(
  calls: dict[Hashable, Callable[[], Any]], repeats: int, warmup: int, min_sample_s: float = 0.0
) -> tuple[dict[Hashable, Any], dict[Hashable, list[float]], dict[Hashable, int]]:
  """Times several calls in ``repeats`` rounds of one sample each, in a shuffled order.

  Each call first runs ``warmup`` times untimed. A sample is ``ceil(min_sample_s / t)``
  back-to-back calls (at least one), ``t`` the call's fastest warm-up, and gives seconds
  per call. The order is shuffled anew every round, from a fixed seed, so that runs repeat it.

  Returns:
    ``(last output, seconds per call of each sample, calls per sample)``, each a dict keyed
    like ``calls``.
  """
  if min_sample_s > 0 and warmup < 1:
    raise ValueError(f"`min_sample_s` > 0 needs `warmup` >= 1 to size samples, got {warmup}.")
  outs, number = {}, {}
  for key, call in calls.items():
    fastest = math.inf
    for _ in range(warmup):
      start = time.perf_counter()
      outs[key] = call()
      fastest = min(fastest, time.perf_counter() - start)
    number[key] = max(1, math.ceil(min_sample_s / fastest)) if min_sample_s > 0 else 1
  times = {key: [] for key in calls}
  order, rng = list(calls), random.Random(0)
  for _ in range(repeats):
    rng.shuffle(order)
    for key in order:
      start = time.perf_counter()
      for _ in range(number[key]):
        outs[key] = calls[key]()
      times[key].append((time.perf_counter() - start) / number[key])
  return outs, times, number


def paired_ratio(times: list[float], reference: list[float]) -> float:
  """Median over rounds of ``times / reference``, two calls' samples from the same rounds.

  A ratio of two medians would compare samples from different stretches of a machine's
  load; each round's own ratio does not.
  """
  return statistics.median(t / r for t, r in zip(times, reference, strict=True))


def memory_bytes(compiled) -> int | None:
  """Temp + output bytes of a compiled JAX function (``None`` where XLA does not say)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)


def compile_aot(fn: Callable, *args) -> tuple[Callable, float, int | None]:
  """AOT-compiles ``jax.jit(fn)`` for ``args``: ``(compiled, seconds, memory bytes)``."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start, memory_bytes(compiled)


def tracemalloc_peak(call: Callable[[], Any]) -> int:
  """Peak bytes that Python's allocator saw during one ``call()`` (NumPy, not torch)."""
  tracemalloc.start()
  try:
    call()
    return tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


@functools.lru_cache(maxsize=4)
def _exp_kernels(size: int) -> tuple[dict[str, Callable[[], Any]], int]:
  """Calls of ``size`` float32 exponentials, by kind, compiled once per size.

  ``size`` is rounded down to a square; returns ``(kind -> call, exponentials per call)``.

  ``compute``: ``jnp.exp`` of a ``[side, side]`` array generated on the fly as an outer
  product and summed over rows, so that XLA fuses it into one loop with no memory traffic,
  the shape of a Sinkhorn transform: the bound. ``memory``: ``jnp.exp`` of a materialised
  array of ``size`` elements, bounded by memory bandwidth (for reference).
  """
  side = int(np.sqrt(size))
  rows = jax.random.uniform(jax.random.key(0), (side,), jnp.float32, -1.0, 0.0)
  cols = jax.random.uniform(jax.random.key(1), (side,), jnp.float32, 0.0, 10.0)
  flat = jax.random.uniform(jax.random.key(2), (side * side,), jnp.float32, -10.0, 0.0)
  kernels = {
    "compute": (lambda r, c: jnp.sum(jnp.exp(r[:, None] * c[None, :]), axis=1), rows, cols),
    "memory": (jnp.exp, flat),
  }
  calls = {}
  for name, (fn, *args) in kernels.items():
    compiled, _, _ = compile_aot(fn, *args)
    calls[name] = lambda c=compiled, a=args: jax.block_until_ready(c(*a))
  return calls, side * side


def exp_probe(size: int) -> tuple[Callable[[], Any], int]:
  """The bound's kernel (``compute`` of :func:`_exp_kernels`): ``(call, exponentials)``."""
  calls, exps = _exp_kernels(size)
  return calls["compute"], exps


def measure_exp_rate(size: int, repeats: int = 5, min_sample_s: float = 0.0) -> dict[str, float]:
  """This machine's float32 exponential throughput (exps/s), from jitted ``jnp.exp``.

  Args:
    size: number of exponentials per call (rounded down to a square).
    repeats: timed samples; the median is used.
    min_sample_s: the least duration of a sample (see :func:`timed_in_turn`).

  Returns:
    ``kind -> exps/s`` for the kinds of :func:`_exp_kernels`.
  """
  calls, exps = _exp_kernels(size)
  rates = {}
  for name, call in calls.items():
    _, times = timed(call, repeats, 2, min_sample_s)
    rates[name] = exps / statistics.median(times)
  return rates


class Runner(NamedTuple):
  """One implementation ready to time on one case.

  Attributes:
    call: runs it once and returns synchronised outputs.
    summarize: ``outputs -> (value, iterations, counted exponentials)``.
    compile_s: ahead-of-time compile seconds, or ``None`` (not JAX).
    memory_bytes: peak memory, as ``memory_kind`` says, or ``None``.
    memory_kind: how memory was measured.
  """

  call: Callable[[], Any]
  summarize: Callable[[Any], tuple[float, int, float]]
  compile_s: float | None
  memory_bytes: int | None
  memory_kind: str


@dataclasses.dataclass
class Measurement:
  """One timed implementation on one case.

  Attributes:
    case: the case's name (``loss | solve | solver | hard``).
    size: the case's sizes (``B`` or ``n, P``).
    impl: implementation name.
    direction: ``fwd | fwd+bwd``.
    times_s: every timed sample's seconds per call.
    calls_per_sample: back-to-back calls in each sample.
    compile_s: ahead-of-time compile seconds (JAX) or ``None``.
    value: the loss or mean OT value computed.
    iterations: iterations run (the most of any problem).
    exps: exponentials counted for the bound.
    memory_bytes: peak memory, measured as ``memory_kind`` says.
    memory_kind: how memory was measured.
    median_s: median of ``times_s``.
    exp_rate: the median exp rate (exps/s) of the bound's kernel, sampled in the same rounds.
    bound_fraction: the median over rounds of ``exps / (time * exp rate)``, both of the round:
      the fraction of exp-bound throughput.
    ratio_to_fused: the median over rounds of ``time / fused time`` of the same case, size
      and direction.
    grad_vs_geomloss: for the fused loss forward+backward, ``‖g - g_GL‖ / ‖g_GL‖`` of the
      gradient w.r.t. the student's embeddings against GeomLoss's; else ``None``.
  """

  case: str
  size: dict[str, int]
  impl: str
  direction: str
  times_s: list[float]
  calls_per_sample: int
  compile_s: float | None
  value: float
  iterations: int
  exps: float
  memory_bytes: int | None
  memory_kind: str
  median_s: float = 0.0
  exp_rate: float | None = None
  bound_fraction: float | None = None
  ratio_to_fused: float | None = None
  grad_vs_geomloss: float | None = None


# The key under which :func:`measure` samples the bound's kernel among the runners.
_PROBE = ("exp probe", "")


def measure(
  case: str, size: dict[str, int], runners: dict[tuple[str, str], Runner], config
) -> list[tuple[Measurement, Any]]:
  """Times ``runners`` in turn (see :func:`timed_in_turn`), keyed by ``(impl, direction)``.

  The bound's kernel (:func:`exp_probe` of ``config.exp_size`` exponentials) is sampled in
  the same rounds, so that each runner's fraction of the bound compares samples taken one
  right after the other.

  Returns:
    ``(measurement, last outputs)`` per runner, in the order of ``runners``.
  """
  probe, probe_exps = exp_probe(config.exp_size)
  outs, times, number = timed_in_turn(
    {_PROBE: probe, **{key: runner.call for key, runner in runners.items()}},
    config.repeats,
    config.warmup,
    config.min_sample_s,
  )
  rates = [probe_exps / t for t in times[_PROBE]]
  results = []
  for (impl, direction), runner in runners.items():
    value, iterations, exps = runner.summarize(outs[impl, direction])
    exps = float(exps)
    measurement = Measurement(
      case=case,
      size=size,
      impl=impl,
      direction=direction,
      times_s=times[impl, direction],
      calls_per_sample=number[impl, direction],
      compile_s=runner.compile_s,
      value=float(value),
      iterations=int(iterations),
      exps=exps,
      memory_bytes=runner.memory_bytes,
      memory_kind=runner.memory_kind,
      median_s=statistics.median(times[impl, direction]),
      exp_rate=statistics.median(rates),
      bound_fraction=statistics.median(
        exps / (t * rate) for t, rate in zip(times[impl, direction], rates, strict=True)
      ),
    )
    results.append((measurement, outs[impl, direction]))
  return results
