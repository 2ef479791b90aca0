r"""Throughput of the OT losses, every implementation side by side in one process.

Two cases, each timed for every implementation that is installed:

* ``loss``: MT-PKDOT's structural OT loss as training uses it: ``T`` teachers and a student of
  ``B`` embeddings (``d`` features, drawn around 8 cluster centres so that the similarity
  matrices have block structure), ``k`` least-similar anchors, debiased Sinkhorn divergence
  at ``blur = 0.1``, ``scaling = 0.5``; forward (``fwd``) and forward+backward w.r.t. the
  student (``fwd+bwd``).

  - ``fused``: ``structural_ot_loss(backend="fused")``, GeomLoss's annealing schedule.
  - ``ott_backend``: ``structural_ot_loss(backend="ott")``: ott-jax's solver on the same
    batched problems, which has no ``Anneal``: ``Tolerance(epsilon=blur²)``, the *converged*
    ``OT_{blur²}`` (ott's L1 threshold 1e-3 at ``blur²``).
  - ``ott_plain``: ott-jax as a user calls it: a Python loop over teachers, each calling a
    jitted function that builds the anchored clouds and runs
    ``ott.tools.sinkhorn_divergence.sinkhorn_divergence(PointCloud, ...)`` with absolute
    ``epsilon = blur² = 0.01``, ``scale_cost = 2`` (cost ``½‖x - y‖²``) and ott's default
    solver (L1 marginal threshold 1e-3, no annealing): the converged ``OT_{0.01}`` divergence.
  - ``pot``: POT in NumPy float64 (forward only; POT's NumPy backend has no autodiff): per
    teacher the three terms with ``ot.sinkhorn(method="sinkhorn_log")`` at ``eps = 0.01``
    (POT's L2 marginal threshold 1e-3), debiased as ``OT_xy - ½ OT_xx - ½ OT_yy``; values
    in the KL convention, ``<π, C> + eps KL(π | a ⊗ b)``, from POT's plan.
  - ``geomloss``: ``SamplesLoss("sinkhorn", p=2, blur=0.1, scaling=0.5, debias=True,
    backend="tensorized")`` on the same anchored clouds built in torch (one call per
    teacher, as the research release does, so each teacher gets its own diameter), torch
    on CPU (CUDA when torch sees a GPU). Skipped, and said so, when torch/geomloss are absent.

* ``solver``: the Sinkhorn solver alone on ``[P, n, n]`` costs ``½‖x - y‖²`` of random clouds
  (``d = 8``), ``Fixed(100 iterations, epsilon = 0.1)``: ``fused`` (``mtpkd_jax.ot.solve``),
  ``ott`` (``Sinkhorn(min_iterations = max_iterations = 100)`` on ``Geometry(cost_matrix)``,
  vmapped over problems) and ``pot`` (``sinkhorn_log``, ``numItermax = 100``, ``stopThr = 0``,
  looped over problems). GeomLoss has no fixed-iteration mode: not applicable. Plus ``hard``:
  two well-separated Gaussian clouds under the tolerance schedule (L1 marginal error 1e-3 for
  fused and ott, POT's L2 error 1e-3), reporting the iterations each implementation used.

Method: each JAX function is lowered and compiled ahead of time (compile time reported apart),
called ``warmup`` times, then timed ``repeats`` times with ``block_until_ready``; the median is
reported. Memory: JAX ``compiled.memory_analysis()`` temp + output bytes; NumPy (POT):
``tracemalloc`` peak of one call; torch: ``torch.cuda.max_memory_allocated`` on GPU, not
measured on CPU (tracemalloc does not see torch's allocator). A ``memory`` section compiles the
fused loss's forward+backward at ``memory_batch`` with ``gradient="envelope"`` and
``"unrolled"`` for two loop lengths: envelope memory must not grow with iterations.

Exponential-throughput bound. The script measures this machine's rate ``R`` (exps/s) of a
jitted ``jnp.exp`` over a large (``4096 x 4096``) float32 array that XLA generates on the fly
(an outer product) and row-sums in the same fused loop, as a Sinkhorn transform does, so that
``R`` measures exponentials, not memory bandwidth (the rate of ``exp`` over a materialised array
is recorded too, as ``exp_rate_memory_bound_per_s``). A Sinkhorn transform of an ``n x m`` problem
costs ``n m`` exponentials, so an implementation's counted work is

* ``solver``: ``2 P n² iterations``; ``hard``: ``2 P n² max_p(iters_p)`` for the batched ones
  (all problems advance in lockstep), ``2 n² Σ_p iters_p`` for looped POT;
* ``loss``: ``fused`` and ``geomloss`` (same schedule of ``L`` epsilons: 4 transforms at
  initialisation, 4 per step, 4 in the final extrapolation): ``T · 4 B² (L + 2)``;
  ``ott_backend`` (3 terms per teacher vmapped in lockstep, 2 transforms per iteration):
  ``3 T · 2 B² max(iters)``; ``ott_plain`` and ``pot`` (each term solved on its own):
  ``2 B² Σ_terms iters``. Backward passes are not counted.

``bound`` is ``work / (median time · R)``: 100 % is exp-bound throughput on this machine.
``x_fused`` is ``median time / fused median time`` for the same case, size and direction.

Launch (from the repository root)::

  python -m experiments.bench_ot                  # default subset, < 5 min on 2 CPU cores
  python -m experiments.bench_ot --full           # every size
  python -m experiments.bench_ot --smoke --output_dir /tmp/bench_ot   # seconds, for tests

Default subset: ``B in {64, 128, 256}``, ``n in {32, 128, 512}``, ``P in {1, 4}``, memory at
``B = 512``. ``--full`` adds ``B = 512`` and ``P = 12``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from mtpkd_jax import ot as mot
from mtpkd_jax.ot import similarity
from mtpkd_jax.ot import sinkhorn as sinkhorn_lib

IMPLS_LOSS = ("fused", "ott_backend", "ott_plain", "pot", "geomloss")
IMPLS_SOLVER = ("fused", "ott", "pot")
DIRECTIONS = ("fwd", "fwd+bwd")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """Sizes and repetitions of one benchmark run.

  Attributes:
    batch_sizes: ``B`` values of the loss case.
    num_teachers: ``T``.
    k: anchors per row.
    dim: embedding dimension ``d`` of student and teachers.
    blur: GeomLoss blur; ``blur²`` is the target epsilon.
    scaling: GeomLoss scaling.
    solver_sizes: ``n`` values of the solver case.
    solver_problems: ``P`` values of the solver case.
    solver_iterations: fixed iterations of the solver case.
    solver_epsilon: absolute epsilon of the solver case.
    hard_size: ``n`` of the hard tolerance case.
    hard_problems: ``P`` of the hard tolerance case.
    hard_epsilon: absolute epsilon of the hard case.
    hard_threshold: marginal-error threshold of the hard case.
    hard_max_iterations: iteration cap of the hard case.
    memory_batch: ``B`` of the envelope-vs-unrolled memory comparison.
    memory_iterations: loop lengths (``Anneal.max_iterations``) compared there.
    repeats: timed calls per measurement (the median is reported).
    warmup: untimed calls before timing.
    exp_size: elements of the array whose ``exp`` measures the machine's exp rate.
    torch_threads: ``torch.set_num_threads`` for GeomLoss on CPU (0 keeps torch's default).
      1 by default: on a small, shared CPU machine torch's OpenMP parallel regions stall
      whenever one of their threads is descheduled (GeomLoss calls of 10 ms took 0.1-3 s
      with 2 threads on a loaded 2-core machine, steadily 10 ms with 1).
  """

  batch_sizes: tuple[int, ...] = (64, 128, 256)
  num_teachers: int = 3
  k: int = 30
  dim: int = 512
  blur: float = 0.1
  scaling: float = 0.5
  solver_sizes: tuple[int, ...] = (32, 128, 512)
  solver_problems: tuple[int, ...] = (1, 4)
  solver_iterations: int = 100
  solver_epsilon: float = 0.1
  hard_size: int = 128
  hard_problems: int = 4
  hard_epsilon: float = 0.05
  hard_threshold: float = 1e-3
  hard_max_iterations: int = 5000
  memory_batch: int = 512
  memory_iterations: tuple[int, ...] = (16, 32)
  repeats: int = 5
  warmup: int = 2
  exp_size: int = 1 << 24
  torch_threads: int = 1


MODES = {
  "default": BenchConfig(),
  "full": BenchConfig(batch_sizes=(64, 128, 256, 512), solver_problems=(1, 4, 12)),
  "smoke": BenchConfig(
    batch_sizes=(16,),
    k=4,
    dim=8,
    solver_sizes=(8,),
    solver_problems=(2,),
    solver_iterations=10,
    hard_size=16,
    hard_problems=2,
    hard_epsilon=0.1,
    memory_batch=16,
    memory_iterations=(4, 8),
    repeats=2,
    warmup=1,
    exp_size=1 << 16,
  ),
}


# ----------------------------------------------------------------------------- helpers


def _optional(module: str):
  """Imports ``module``, or returns ``None`` when it is not installed."""
  try:
    return importlib.import_module(module)
  except ImportError:
    return None


def _versions() -> dict[str, str | None]:
  names = {"jax": "jax", "ott-jax": "ott", "pot": "ot", "torch": "torch", "geomloss": "geomloss"}
  out = {}
  for label, module in names.items():
    mod = _optional(module)
    out[label] = None if mod is None else getattr(mod, "__version__", "unknown")
  return out


def _block(tree):
  return jax.block_until_ready(tree)


def _timed(call: Callable[[], Any], repeats: int, warmup: int) -> tuple[Any, list[float]]:
  """Runs ``call`` (which must return synchronised results) and times it."""
  out = None
  for _ in range(warmup):
    out = call()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = call()
    times.append(time.perf_counter() - start)
  return out, times


def _compile(fn: Callable, *args) -> tuple[Callable, float, int | None]:
  """AOT-compiles ``jax.jit(fn)`` for ``args``: ``(compiled, seconds, temp + output bytes)``."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  seconds = time.perf_counter() - start
  return compiled, seconds, _memory_bytes(compiled)


def _memory_bytes(compiled) -> int | None:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)


def measure_exp_rate(size: int, repeats: int = 5) -> dict[str, float]:
  """This machine's float32 exponential throughput (exps/s), from jitted ``jnp.exp``.

  Args:
    size: number of exponentials per call (rounded down to a square).
    repeats: timed calls; the median is used.

  Returns:
    ``compute``: ``jnp.exp`` of a ``[side, side]`` array generated on the fly as an outer
    product and summed over rows, so that XLA fuses it into one loop with no memory traffic,
    the shape of a Sinkhorn transform; this is the bound used. ``memory``: ``jnp.exp`` of a
    materialised array of ``size`` elements, bounded by memory bandwidth (for reference).
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
    compiled, _, _ = _compile(fn, *args)
    _, times = _timed(lambda c=compiled, a=args: _block(c(*a)), repeats, 2)
    rates[name] = side * side / statistics.median(times)
  return rates


@dataclasses.dataclass
class Measurement:
  """One timed implementation on one case.

  Attributes:
    case: ``loss | solver | hard``.
    size: the case's sizes (``B`` or ``n, P``).
    impl: implementation name.
    direction: ``fwd | fwd+bwd``.
    times_s: every timed call's seconds.
    compile_s: ahead-of-time compile seconds (JAX) or ``None``.
    value: the loss or mean OT value computed.
    iterations: iterations run (see the module docstring for which).
    exps: exponentials counted for the bound.
    memory_bytes: peak memory, measured as ``memory_kind`` says.
    memory_kind: how memory was measured.
    median_s: median of ``times_s``.
    ratio_to_fused: ``median_s / fused median_s`` of the same case, size and direction.
    bound_fraction: ``exps / (median_s * exp_rate)``.
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


def _measure(case, size, impl, direction, call, summarize, config, compile_s, memory, kind):
  out, times = _timed(call, config.repeats, config.warmup)
  value, iterations, exps = summarize(out)
  return Measurement(
    case=case,
    size=size,
    impl=impl,
    direction=direction,
    times_s=times,
    compile_s=compile_s,
    value=float(value),
    iterations=int(iterations),
    exps=float(exps),
    memory_bytes=memory,
    memory_kind=kind,
    median_s=statistics.median(times),
  )


def _tracemalloc_peak(call: Callable[[], Any]) -> int:
  tracemalloc.start()
  try:
    call()
    return tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


# ----------------------------------------------------------------------------- data


def make_embeddings(seed: int, batch: int, num_teachers: int, dim: int):
  """Clustered embeddings: ``student [B, d]``, ``teachers [T, B, d]`` (float32 NumPy).

  Samples share one of 8 cluster labels; each model has its own cluster centres and adds its
  own noise, so that similarity matrices have the block structure of
  trained embeddings rather than the near-constant off-diagonal of isotropic noise.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 8, size=batch)
  centres = rng.normal(size=(num_teachers + 1, 8, dim))
  noise = rng.normal(size=(num_teachers + 1, batch, dim))
  views = centres[:, labels] + 0.7 * noise
  return views[0].astype(np.float32), views[1:].astype(np.float32)


def _np_anchored(student, teacher, k):
  """NumPy anchored clouds ``(student_points, teacher_points)``, each ``[B, k]``."""

  def cos(z):
    unit = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
    return unit @ unit.T

  s_s, s_t = cos(student), cos(teacher)
  idx = np.argpartition(s_t, k - 1, axis=1)[:, :k]
  return (
    np.take_along_axis(s_s - s_s.min(), idx, 1),
    np.take_along_axis(s_t - s_t.min(), idx, 1),
  )


def _torch_anchored(torch, student, teacher, k):
  """Torch anchored clouds ``(student_points, teacher_points)``, each ``[B, k]``."""

  def cos(z):
    unit = z / torch.clamp(torch.linalg.norm(z, dim=-1, keepdim=True), min=1e-8)
    return unit @ unit.T

  s_s, s_t = cos(student), cos(teacher)
  idx = torch.topk(-s_t, k, dim=-1).indices
  return torch.gather(s_s - s_s.min(), 1, idx), torch.gather(s_t - s_t.min(), 1, idx)


def _half_sq(x, y):
  """NumPy cost ``½‖x_i - y_j‖²``: ``[..., n, d], [..., m, d] -> [..., n, m]``."""
  return 0.5 * ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------- loss case


def _loss_fused_or_ott(backend, config, student, teachers):
  """``fused`` / ``ott_backend`` runners: ``{direction: (call, summarize, compile, mem)}``."""
  if backend == "fused":
    schedule = mot.Anneal(blur=config.blur, scaling=config.scaling)
  else:
    schedule = mot.Tolerance(epsilon=config.blur**2)
  batch, num_teachers = student.shape[0], teachers.shape[0]

  def loss(s, t):
    return mot.structural_ot_loss(s, t, k=config.k, schedule=schedule, backend=backend)

  def work(iterations):
    if backend == "fused":
      return num_teachers * 4 * batch**2 * (iterations + 2)
    return 3 * num_teachers * 2 * batch**2 * iterations

  def summarize(out):
    value, aux = out[0] if isinstance(out[0], tuple) else out
    iterations = int(aux["iterations"])
    return value, iterations, work(iterations)

  runners = {}
  for direction, fn in (("fwd", loss), ("fwd+bwd", jax.value_and_grad(loss, has_aux=True))):
    compiled, seconds, memory = _compile(fn, student, teachers)
    call = functools.partial(lambda c: _block(c(student, teachers)), compiled)
    runners[direction] = (call, summarize, seconds, memory, "xla temp+output")
  return runners


def _ott_plain_runners(config, student, teachers):
  """ott-jax as a user calls it: a Python loop over teachers of a jitted per-teacher loss."""
  from ott.geometry import pointcloud
  from ott.tools import sinkhorn_divergence as ott_divergence

  batch, num_teachers = student.shape[0], teachers.shape[0]

  def teacher_loss(s, t):
    s_t = jax.lax.stop_gradient(similarity.cosine_similarity(t))
    t_pts, s_pts = similarity.select_anchors(
      similarity.shift_nonnegative(s_t),
      similarity.shift_nonnegative(similarity.cosine_similarity(s)),
      "least",
      config.k,
    )
    # scale_cost=2 makes PointCloud's ‖x - y‖² our ½‖x - y‖²; epsilon is absolute.
    div, out = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, s_pts, t_pts, epsilon=config.blur**2, scale_cost=2.0
    )
    return div / num_teachers, jnp.stack(out.n_iters)

  def summarize(outs):
    value = sum(float(o[0][0] if isinstance(o[0], tuple) else o[0]) for o in outs)
    iters = [o[0][1] if isinstance(o[0], tuple) else o[1] for o in outs]
    total = int(sum(int(jnp.sum(i)) for i in iters))
    return value, max(int(jnp.max(i)) for i in iters), 2 * batch**2 * total

  runners = {}
  grad_fn = jax.value_and_grad(teacher_loss, has_aux=True)
  for direction, fn in (("fwd", teacher_loss), ("fwd+bwd", grad_fn)):
    # One compile serves every teacher (same shapes), as jax.jit's cache would.
    compiled, seconds, memory = _compile(fn, student, teachers[0])

    def call(compiled=compiled, direction=direction):
      outs = [compiled(student, teachers[t]) for t in range(num_teachers)]
      if direction == "fwd+bwd":
        # The user sums the teachers' gradients.
        functools.reduce(jnp.add, [o[1] for o in outs])
      return _block(outs)

    runners[direction] = (call, summarize, seconds, memory, "xla temp+output, one teacher")
  return runners


def pot_entropic(x, y, eps, *, stop_threshold, max_iterations):
  """POT log-domain Sinkhorn: ``(OT_eps in the KL convention, iterations)``.

  Args:
    x: Array of shape ``[n, d]`` (or a ``[n, m]`` cost when ``y`` is ``None``).
    y: Array of shape ``[m, d]`` or ``None``.
    eps: absolute epsilon.
    stop_threshold: POT's ``stopThr`` (L2 error of the column marginal, checked every 10).
    max_iterations: POT's ``numItermax``.

  Returns:
    ``(value, iterations)``: ``<π, C> + eps KL(π | a ⊗ b)`` of POT's plan, iterations run.
  """
  import ot

  cost = x if y is None else _half_sq(x, y)
  n, m = cost.shape
  a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    plan, log = ot.sinkhorn(
      a,
      b,
      cost,
      eps,
      method="sinkhorn_log",
      numItermax=max_iterations,
      stopThr=stop_threshold,
      log=True,
    )
  positive = plan > 0
  kl = np.sum(plan[positive] * np.log(plan[positive] * (n * m)))
  return float(np.sum(plan * cost) + eps * kl), int(log["niter"]) + 1


def _pot_runners(config, student, teachers):
  """POT (NumPy float64), forward only."""
  student = student.astype(np.float64)
  teachers = teachers.astype(np.float64)
  batch = student.shape[0]
  solve = functools.partial(
    pot_entropic, eps=config.blur**2, stop_threshold=1e-3, max_iterations=10_000
  )

  def call():
    value, iters = 0.0, []
    for teacher in teachers:
      x, y = _np_anchored(student, teacher, config.k)
      (xy, i_xy), (xx, i_xx), (yy, i_yy) = solve(x, y), solve(x, x), solve(y, y)
      value += (xy - 0.5 * xx - 0.5 * yy) / len(teachers)
      iters += [i_xy, i_xx, i_yy]
    return value, iters

  def summarize(out):
    value, iters = out
    return value, max(iters), 2 * batch**2 * sum(iters)

  return {"fwd": (call, summarize, None, _tracemalloc_peak(call), "tracemalloc peak")}


def _geomloss_runners(config, student, teachers):
  """GeomLoss (torch), one ``SamplesLoss`` call per teacher, forward and backward."""
  torch = _optional("torch")
  geomloss = _optional("geomloss")
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cpu" and config.torch_threads:
    torch.set_num_threads(config.torch_threads)
  samples_loss = geomloss.SamplesLoss(
    "sinkhorn",
    p=2,
    blur=config.blur,
    scaling=config.scaling,
    debias=True,
    backend="tensorized",
  )
  t_student = torch.tensor(student, device=device)
  t_teachers = torch.tensor(teachers, device=device)
  batch, num_teachers = student.shape[0], teachers.shape[0]

  def sync():
    if device == "cuda":
      torch.cuda.synchronize()

  def loss(s):
    total = 0.0
    for teacher in t_teachers:
      x, y = _torch_anchored(torch, s, teacher, config.k)
      total = total + samples_loss(x, y) / num_teachers
    return total

  def forward():
    with torch.no_grad():
      value = loss(t_student)
    sync()
    return value

  def backward():
    s = t_student.clone().requires_grad_(True)
    value = loss(s)
    value.backward()
    sync()
    return value.detach()

  steps = _geomloss_steps(config, student, teachers)

  def summarize(value):
    return float(value), max(steps), sum(4 * batch**2 * (s + 2) for s in steps)

  kind = "torch.cuda.max_memory_allocated" if device == "cuda" else "not measured (torch CPU)"
  runners = {}
  for direction, call in (("fwd", forward), ("fwd+bwd", backward)):
    memory = None
    if device == "cuda":
      torch.cuda.reset_peak_memory_stats()
      call()
      memory = int(torch.cuda.max_memory_allocated())
    runners[direction] = (call, summarize, None, memory, kind)
  return runners


def _geomloss_steps(config, student, teachers):
  """Length of GeomLoss's epsilon list for each teacher's clouds (its own diameter)."""
  steps = []
  for teacher in teachers:
    x, y = _np_anchored(student.astype(np.float64), teacher.astype(np.float64), config.k)
    points = np.concatenate([x, y])
    diameter = np.linalg.norm(points.max(0) - points.min(0))
    p, blur, s = 2, config.blur, config.scaling
    middle = np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(s))
    steps.append(len(middle) + 2)
  return steps


def available_loss_impls() -> dict[str, str | None]:
  """``impl -> None`` when it runs here, else the reason it is skipped."""
  out = dict.fromkeys(IMPLS_LOSS)
  if _optional("ot") is None:
    out["pot"] = "POT is not installed"
  if _optional("torch") is None or _optional("geomloss") is None:
    out["geomloss"] = "torch/geomloss are not installed (pip install torch==2.13.0 geomloss)"
  return out


def bench_loss(config: BenchConfig, batch: int, skipped: dict[str, str | None]):
  """Times every available implementation of the loss at batch size ``batch``."""
  student, teachers = make_embeddings(batch, batch, config.num_teachers, config.dim)
  j_student, j_teachers = jnp.asarray(student), jnp.asarray(teachers)
  builders = {
    "fused": lambda: _loss_fused_or_ott("fused", config, j_student, j_teachers),
    "ott_backend": lambda: _loss_fused_or_ott("ott", config, j_student, j_teachers),
    "ott_plain": lambda: _ott_plain_runners(config, j_student, j_teachers),
    "pot": lambda: _pot_runners(config, student, teachers),
    "geomloss": lambda: _geomloss_runners(config, student, teachers),
  }
  results = []
  for impl, build in builders.items():
    if skipped[impl] is not None:
      continue
    for direction, (call, summarize, seconds, memory, kind) in build().items():
      results.append(
        _measure(
          "loss",
          {"B": batch, "T": config.num_teachers, "k": config.k, "d": config.dim},
          impl,
          direction,
          call,
          summarize,
          config,
          seconds,
          memory,
          kind,
        )
      )
  return results


# ----------------------------------------------------------------------------- solver case


def _random_costs(seed, problems, n, dim=8):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(problems, n, dim))
  y = rng.normal(size=(problems, n, dim)) + 0.5
  return _half_sq(x, y)


def _hard_costs(seed, problems, n, dim=2):
  """Two well-separated Gaussian clouds per problem (spread 0.3, centres 4 apart)."""
  rng = np.random.default_rng(seed)
  x = 0.3 * rng.normal(size=(problems, n, dim))
  y = 0.3 * rng.normal(size=(problems, n, dim)) + 4.0 / np.sqrt(dim)
  return _half_sq(x, y)


def _ott_solver(schedule):
  from ott.geometry import geometry
  from ott.problems.linear import linear_problem
  from ott.solvers.linear import sinkhorn as ott_sinkhorn

  if isinstance(schedule, mot.Fixed):
    solver = ott_sinkhorn.Sinkhorn(
      threshold=0.0,
      min_iterations=schedule.iterations,
      max_iterations=schedule.iterations,
    )
  else:
    solver = ott_sinkhorn.Sinkhorn(
      threshold=schedule.threshold, max_iterations=schedule.max_iterations
    )

  def solve_one(cost):
    geom = geometry.Geometry(cost_matrix=cost, epsilon=schedule.target_epsilon)
    out = solver(linear_problem.LinearProblem(geom))
    return out.reg_ot_cost, out.n_iters

  return jax.vmap(solve_one)


def bench_solver(config: BenchConfig, case: str, problems: int, n: int, pot_available: bool):
  """Times the solver alone on ``[problems, n, n]`` costs.

  Args:
    config: the run's configuration.
    case: ``solver`` (``Fixed`` iterations on random clouds) or ``hard`` (``Tolerance`` on two
      separated clouds).
    problems: ``P``.
    n: points per cloud.
    pot_available: whether to time POT too.

  Returns:
    A list of :class:`Measurement`.
  """
  if case == "solver":
    cost = _random_costs(n, problems, n)
    schedule = mot.Fixed(iterations=config.solver_iterations, epsilon=config.solver_epsilon)
    pot_kwargs = {"stop_threshold": 0.0, "max_iterations": config.solver_iterations}
  else:
    cost = _hard_costs(n, problems, n)
    schedule = mot.Tolerance(
      threshold=config.hard_threshold,
      max_iterations=config.hard_max_iterations,
      epsilon=config.hard_epsilon,
    )
    pot_kwargs = {
      "stop_threshold": config.hard_threshold,
      "max_iterations": schedule.max_iterations,
    }
  j_cost = jnp.asarray(cost, jnp.float32)

  def work(iters):
    iters = np.asarray(iters)
    return 2 * n * n * (problems * iters.max() if case == "hard" else iters.sum())

  def fused(c):
    out = mot.solve(c, schedule=schedule)
    return out.value, out.iterations

  def summarize_jax(out):
    value, iters = out
    iters = np.asarray(iters)
    counted = iters if case == "hard" else np.full(problems, config.solver_iterations)
    return float(jnp.mean(value)), int(iters.max()), work(counted)

  size = {"n": n, "P": problems}
  results = []
  for impl, fn in (("fused", fused), ("ott", _ott_solver(schedule))):
    compiled, seconds, memory = _compile(fn, j_cost)
    call = functools.partial(lambda c: _block(c(j_cost)), compiled)
    results.append(
        _measure(
            case, size, impl, "fwd", call, summarize_jax, config, seconds, memory,
            "xla temp+output",
        )
    )  # fmt: skip
  if pot_available:

    def pot_call():
      outs = [pot_entropic(c, None, schedule.target_epsilon, **pot_kwargs) for c in cost]
      return [o[0] for o in outs], [o[1] for o in outs]

    def summarize_pot(out):
      values, iters = out
      if case == "hard":
        return float(np.mean(values)), max(iters), 2 * n * n * sum(iters)
      return float(np.mean(values)), max(iters), work(np.full(problems, max(iters)))

    memory = _tracemalloc_peak(pot_call)
    results.append(
        _measure(
            case, size, "pot", "fwd", pot_call, summarize_pot, config, None, memory,
            "tracemalloc peak",
        )
    )  # fmt: skip
  return results


# ----------------------------------------------------------------------------- memory


def bench_memory(config: BenchConfig) -> list[dict[str, Any]]:
  """Compiled forward+backward memory of the fused loss, envelope vs unrolled gradients."""
  student, teachers = make_embeddings(0, config.memory_batch, config.num_teachers, config.dim)
  student, teachers = jnp.asarray(student), jnp.asarray(teachers)
  rows = []
  for gradient in sinkhorn_lib.GRADIENTS:
    for max_iterations in config.memory_iterations:
      schedule = mot.Anneal(blur=config.blur, scaling=config.scaling, max_iterations=max_iterations)

      def loss(s, t, schedule=schedule, gradient=gradient):
        return mot.structural_ot_loss(s, t, k=config.k, schedule=schedule, gradient=gradient)

      compiled = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(student, teachers)
      analysis = compiled.compile().memory_analysis()
      rows.append(
        {
          "B": config.memory_batch,
          "gradient": gradient,
          "max_iterations": max_iterations,
          "temp_bytes": None if analysis is None else int(analysis.temp_size_in_bytes),
          "output_bytes": None if analysis is None else int(analysis.output_size_in_bytes),
        }
      )
  return rows


# ----------------------------------------------------------------------------- report


def add_ratios(results: list[Measurement], exp_rate: float) -> None:
  """Fills ``ratio_to_fused`` and ``bound_fraction`` in place."""
  fused = {
    (r.case, tuple(sorted(r.size.items())), r.direction): r.median_s
    for r in results
    if r.impl == "fused"
  }
  for r in results:
    reference = fused.get((r.case, tuple(sorted(r.size.items())), r.direction))
    r.ratio_to_fused = None if reference is None else r.median_s / reference
    r.bound_fraction = r.exps / (r.median_s * exp_rate)


def format_table(results: list[Measurement]) -> str:
  """The stdout table (one block per case)."""
  lines = [
    "x_fused = median time / fused median time, same case, size and direction "
    "(>1: slower than fused);",
    "bound = counted exps / (median time x measured exp rate), see the module docstring.",
  ]
  header = (
    f"{'case':<7}{'size':<22}{'impl':<12}{'dir':<8}{'median ms':>11}{'compile s':>10}"
    f"{'x_fused':>9}{'bound %':>9}{'iters':>7}{'value':>12}{'mem MB':>9}"
  )
  for case in ("loss", "solver", "hard"):
    rows = [r for r in results if r.case == case]
    if not rows:
      continue
    lines += ["", header, "-" * len(header)]
    for r in rows:
      size = ",".join(f"{k}={v}" for k, v in r.size.items())
      compile_s = "" if r.compile_s is None else f"{r.compile_s:.2f}"
      ratio = "" if r.ratio_to_fused is None else f"{r.ratio_to_fused:.2f}"
      memory = "" if r.memory_bytes is None else f"{r.memory_bytes / 2**20:.2f}"
      lines.append(
        f"{case:<7}{size:<22}{r.impl:<12}{r.direction:<8}{1e3 * r.median_s:>11.2f}"
        f"{compile_s:>10}{ratio:>9}{100 * r.bound_fraction:>9.1f}{r.iterations:>7}"
        f"{r.value:>12.5g}{memory:>9}"
      )
  return "\n".join(lines)


def format_memory(rows: list[dict[str, Any]]) -> str:
  lines = ["", "fused loss fwd+bwd compiled memory (MB), by gradient and loop length:"]
  for row in rows:
    temp = row["temp_bytes"]
    lines.append(
      f"  B={row['B']} gradient={row['gradient']:<9} max_iterations={row['max_iterations']:<4}"
      f" temp={'n/a' if temp is None else f'{temp / 2**20:.1f}'}"
    )
  return "\n".join(lines)


def plot(results: list[Measurement], path: str) -> None:
  """Throughput against size: loss calls/s vs ``B``; solver problems/s vs ``n``.

  One colour per implementation; line style is the direction (loss) or ``P`` (solver).
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  impls = list(dict.fromkeys(IMPLS_LOSS + IMPLS_SOLVER))
  colours = dict(zip(impls, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
  styles = ("-", "--", ":", "-.")
  problems = sorted({r.size["P"] for r in results if r.case == "solver"})
  panels = (
    ("loss", "B", DIRECTIONS, lambda r: r.direction, lambda r: 1 / r.median_s, "loss calls / s"),
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


def check_targets(results: list[Measurement], memory: list[dict[str, Any]]) -> dict[str, Any]:
  """The project's performance targets, evaluated where this run has the sizes.

  Args:
    results: measurements with ratios filled in.
    memory: rows of :func:`bench_memory`.

  Returns:
    ``target -> {"measured": ..., "met": bool}``.
  """
  out = {}
  fused = _find(results, "loss", "fused", "fwd+bwd", B=128)
  for impl, need in (("ott_plain", 3.0), ("geomloss", 3.0), ("ott_backend", 1.0)):
    other = _find(results, "loss", impl, "fwd+bwd", B=128)
    if fused is not None and other is not None:
      speedup = other.median_s / fused.median_s
      out[f"loss B=128 fwd+bwd: fused >= {need:g}x {impl}"] = {
        "measured": f"{speedup:.2f}x",
        "met": speedup >= need,
      }
  solver = _find(results, "solver", "fused", "fwd", n=512, P=4)
  if solver is not None:
    out["solver n=512 P=4 100 it: fused >= 40% of exp bound"] = {
      "measured": f"{100 * solver.bound_fraction:.1f}%",
      "met": solver.bound_fraction >= 0.4,
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


def run_benchmark(config: BenchConfig, output_dir: str, mode: str = "custom") -> dict[str, Any]:
  """Runs every case, prints the table, writes ``bench_ot.json`` and ``bench_ot.png``.

  Args:
    config: sizes and repetitions.
    output_dir: folder for the JSON and PNG (created).
    mode: label recorded in the JSON.

  Returns:
    The report written to the JSON file.
  """
  os.makedirs(output_dir, exist_ok=True)
  exp_rates = measure_exp_rate(config.exp_size)
  skipped = available_loss_impls()
  results = []
  for batch in config.batch_sizes:
    results += bench_loss(config, batch, skipped)
  for problems in config.solver_problems:
    for n in config.solver_sizes:
      results += bench_solver(config, "solver", problems, n, skipped["pot"] is None)
  results += bench_solver(
    config, "hard", config.hard_problems, config.hard_size, skipped["pot"] is None
  )
  add_ratios(results, exp_rates["compute"])
  memory = bench_memory(config)
  targets = check_targets(results, memory)
  device = jax.devices()[0]
  report = {
    "mode": mode,
    "config": dataclasses.asdict(config),
    "device": {
      "device_kind": device.device_kind,
      "platform": device.platform,
      "cpu_count": os.cpu_count(),
    },
    "versions": _versions(),
    "exp_rate_per_s": exp_rates["compute"],
    "exp_rate_memory_bound_per_s": exp_rates["memory"],
    "implementations": {
      "loss": [i for i in IMPLS_LOSS if skipped[i] is None],
      "solver": list(IMPLS_SOLVER if skipped["pot"] is None else IMPLS_SOLVER[:2]),
    },
    "skipped": {
      **{i: reason for i, reason in skipped.items() if reason is not None},
      "geomloss (solver, hard)": "not applicable: GeomLoss has no fixed-iteration or "
      "tolerance mode, only its annealing schedule",
    },
    "results": [dataclasses.asdict(r) for r in results],
    "memory": memory,
    "targets": targets,
  }
  with open(os.path.join(output_dir, "bench_ot.json"), "w") as f:
    json.dump(report, f, indent=2)
  plot(results, os.path.join(output_dir, "bench_ot.png"))
  print(f"device: {device.platform} {device.device_kind}, {os.cpu_count()} CPUs; {_versions()}")
  print(
    f"measured exp rate: {exp_rates['compute'] / 1e9:.3f} Gexp/s (fused exp+row-sum, the "
    f"bound); {exp_rates['memory'] / 1e9:.3f} Gexp/s materialised (memory-bound, reference)"
  )
  for impl, reason in report["skipped"].items():
    print(f"skipped {impl}: {reason}")
  print(format_table(results))
  print(format_memory(memory))
  for target, verdict in targets.items():
    print(f"target {target}: {verdict['measured']} -> {'met' if verdict['met'] else 'NOT met'}")
  print(f"\nwrote {output_dir}/bench_ot.json and {output_dir}/bench_ot.png")
  return report


# ----------------------------------------------------------------------------- app

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "results/bench_ot", "Folder for bench_ot.json and .png.")
flags.DEFINE_bool("full", False, "Every size (B up to 512, P up to 12).")
flags.DEFINE_bool("smoke", False, "Tiny sizes and 2 timed calls, for tests.")
flags.DEFINE_integer("torch_threads", 1, "torch CPU threads for GeomLoss; 0: torch's default.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if FLAGS.full and FLAGS.smoke:
    raise app.UsageError("--full and --smoke are exclusive.")
  mode = "full" if FLAGS.full else "smoke" if FLAGS.smoke else "default"
  config = dataclasses.replace(MODES[mode], torch_threads=FLAGS.torch_threads)
  run_benchmark(config, FLAGS.output_dir, mode)


if __name__ == "__main__":
  app.run(main)
