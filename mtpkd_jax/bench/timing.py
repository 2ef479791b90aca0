"""Timing, compiling and memory measurement shared by the benchmarks.

Each JAX function is lowered and compiled ahead of time (compile time kept apart), called
``warmup`` times, then timed ``repeats`` times with ``block_until_ready``; the median is
reported. Implementations compared on one case are timed in rounds, one call each per round
in a shuffled order, so that neither a change in the machine's load nor the call just
before favours one of them. Memory: JAX
``compiled.memory_analysis()`` temp + output bytes; NumPy: ``tracemalloc`` peak of one call.
"""

from __future__ import annotations

import dataclasses
import importlib
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


def timed(call: Callable[[], Any], repeats: int, warmup: int) -> tuple[Any, list[float]]:
  """Calls ``call`` (which must return synchronised results): ``(last output, seconds)``."""
  outs, times = timed_in_turn({None: call}, repeats, warmup)
  return outs[None], times[None]


def timed_in_turn(
  calls: dict[Hashable, Callable[[], Any]], repeats: int, warmup: int
) -> tuple[dict[Hashable, Any], dict[Hashable, list[float]]]:
  """Times several calls in ``repeats`` rounds of one call each, in a shuffled order.

  Each call first runs ``warmup`` times untimed. The order is shuffled anew every round, from
  a fixed seed, so that runs repeat it.

  Returns:
    ``(last output, seconds)``, each a dict keyed like ``calls``.
  """
  outs = {}
  for key, call in calls.items():
    for _ in range(warmup):
      outs[key] = call()
  times = {key: [] for key in calls}
  order, rng = list(calls), random.Random(0)
  for _ in range(repeats):
    rng.shuffle(order)
    for key in order:
      start = time.perf_counter()
      outs[key] = calls[key]()
      times[key].append(time.perf_counter() - start)
  return outs, times


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


def measure_exp_rate(size: int, repeats: int = 5) -> dict[str, float]:
  """This machine's float32 exponential throughput (exps/s), from jitted ``jnp.exp``.

  Args:
    size: number of exponentials per call (rounded down to a square).
    repeats: timed calls; the median is used.

  Returns:
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
  rates = {}
  for name, (fn, *args) in kernels.items():
    compiled, _, _ = compile_aot(fn, *args)
    _, times = timed(lambda c=compiled, a=args: jax.block_until_ready(c(*a)), repeats, 2)
    rates[name] = side * side / statistics.median(times)
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
    times_s: every timed call's seconds.
    compile_s: ahead-of-time compile seconds (JAX) or ``None``.
    value: the loss or mean OT value computed.
    iterations: iterations run (the most of any problem).
    exps: exponentials counted for the bound.
    memory_bytes: peak memory, measured as ``memory_kind`` says.
    memory_kind: how memory was measured.
    median_s: median of ``times_s``.
    ratio_to_fused: ``median_s / fused median_s`` of the same case, size and direction.
    bound_fraction: ``exps / (median_s * exp_rate)``.
    grad_vs_geomloss: for the fused loss forward+backward, ``‖g - g_GL‖ / ‖g_GL‖`` of the
      gradient w.r.t. the student's embeddings against GeomLoss's; else ``None``.
  """

  case: str
  size: dict[str, int]
  impl: str
  direction: str
  times_s: list[float]
  compile_s: float | None
  value: float
  iterations: int
  exps: float
  memory_bytes: int | None
  memory_kind: str
  median_s: float = 0.0
  ratio_to_fused: float | None = None
  bound_fraction: float | None = None
  grad_vs_geomloss: float | None = None


def measure(
  case: str, size: dict[str, int], runners: dict[tuple[str, str], Runner], config
) -> list[tuple[Measurement, Any]]:
  """Times ``runners`` in turn (see :func:`timed_in_turn`), keyed by ``(impl, direction)``.

  Returns:
    ``(measurement, last outputs)`` per runner, in the order of ``runners``.
  """
  outs, times = timed_in_turn(
    {key: runner.call for key, runner in runners.items()}, config.repeats, config.warmup
  )
  results = []
  for (impl, direction), runner in runners.items():
    value, iterations, exps = runner.summarize(outs[impl, direction])
    measurement = Measurement(
      case=case,
      size=size,
      impl=impl,
      direction=direction,
      times_s=times[impl, direction],
      compile_s=runner.compile_s,
      value=float(value),
      iterations=int(iterations),
      exps=float(exps),
      memory_bytes=runner.memory_bytes,
      memory_kind=runner.memory_kind,
      median_s=statistics.median(times[impl, direction]),
    )
    results.append((measurement, outs[impl, direction]))
  return results
