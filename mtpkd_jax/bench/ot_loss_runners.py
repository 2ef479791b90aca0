"""The MT-PKDOT loss, end to end and its solve alone, per installed implementation.

The loss end to end (``loss``) and its debiased solve alone (``solve``), timed for every
implementation that is installed.

``loss``: ``T`` teachers and a student of ``B`` embeddings, ``k`` least-similar anchors, the
debiased Sinkhorn divergence at ``blur``, ``scaling``, forward (``fwd``) and forward+backward
w.r.t. the student (``fwd+bwd``). ``solve``: the same anchored clouds built once beforehand
(cosine matrices and anchor selection excluded on every side), forward+backward w.r.t. the
student's points.

* ``fused``: ``structural_ot_loss(backend="fused")`` (``sinkhorn_divergence`` for ``solve``),
  GeomLoss's annealing schedule ``Anneal(blur, scaling)``.
* ``ott_backend``: the same on ott-jax's solver (``backend="ott"``), which has no ``Anneal``:
  ``Tolerance(epsilon=blur²)``, the converged ``OT_{blur²}``.
* ``ott_plain``: ott-jax as a user calls it: a Python loop over teachers, each calling a
  jitted ``ott.tools.sinkhorn_divergence.sinkhorn_divergence(PointCloud, ...)`` with absolute
  ``epsilon = blur²``, ``scale_cost = 2`` (cost ``½‖x - y‖²``), ott's default solver: the
  converged ``OT_{blur²}`` divergence. Each teacher's arguments are sliced once beforehand;
  a timed call is the ``T`` solver calls and, for the ``loss`` forward+backward, one compiled
  sum of their gradients w.r.t. the student's embeddings.
* ``pot`` (``loss``, forward only: POT's NumPy backend has no autodiff): per teacher the three
  terms with :func:`mtpkd_jax.bench.pot.entropic_ot` at ``eps = blur²`` (L2 threshold 1e-3).
* ``geomloss``: ``SamplesLoss("sinkhorn", p=2, blur, scaling, debias=True,
  backend="tensorized")`` per teacher (as the research release calls it, so each teacher gets
  its own diameter), torch on CPU (CUDA when torch sees one). Skipped, and said so, when
  torch/geomloss are absent.

Counted exponentials (a transform of an ``n x m`` problem costs ``n m``): ``fused`` and
``geomloss`` (``L`` epsilons: 4 transforms at initialisation, 4 per step, 4 in the final
extrapolation) ``T · 4 B² (L + 2)``; ``ott_backend`` (3 terms per teacher in lockstep, 2
transforms per iteration) ``3 T · 2 B² max(iters)``; ``ott_plain`` and ``pot`` (each term on
its own) ``2 B² Σ_terms iters``. Backward passes are not counted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mtpkd_jax import ot as mot
from mtpkd_jax.bench import ot_inputs, pot, timing
from mtpkd_jax.ot import similarity

IMPLS = ("fused", "ott_backend", "ott_plain", "pot", "geomloss")
DIRECTIONS = ("fwd", "fwd+bwd")
CASES = ("loss", "solve")
GEOMLOSS_MISSING = "torch/geomloss are not installed (pip install -e '.[bench]')"


def available() -> dict[str, str | None]:
  """``impl -> None`` when it runs here, else the reason it is skipped."""
  out = dict.fromkeys(IMPLS)
  if timing.optional("ot") is None:
    out["pot"] = "POT is not installed (pip install -e '.[test]')"
  if timing.optional("torch") is None or timing.optional("geomloss") is None:
    out["geomloss"] = GEOMLOSS_MISSING
  return out


def _primal(out, direction):
  return out[0] if direction == "fwd+bwd" else out


def _jax_runners(fn, args, summarize, directions, kind="xla temp+output"):
  """``direction -> Runner`` of ``fn(*args) -> (value, aux)`` and its gradient w.r.t. arg 0."""
  runners = {}
  for direction in directions:
    f = fn if direction == "fwd" else jax.value_and_grad(fn, has_aux=True)
    compiled, seconds, memory = timing.compile_aot(f, *args)
    call = functools.partial(lambda c: jax.block_until_ready(c(*args)), compiled)
    runners[direction] = timing.Runner(
      call, functools.partial(summarize, direction=direction), seconds, memory, kind
    )
  return runners


def _batched_runners(backend, config, fn_of, args, directions):
  """``fused`` / ``ott_backend``: every teacher in one call of ``fn_of(schedule)``."""
  if backend == "fused":
    schedule = mot.Anneal(blur=config.blur, scaling=config.scaling)
  else:
    schedule = mot.Tolerance(epsilon=config.blur**2)
  batch, num_teachers = args[0].shape[-2], config.num_teachers

  def summarize(out, direction):
    value, aux = _primal(out, direction)
    iterations = int(aux["iterations"])
    if backend == "fused":
      work = num_teachers * 4 * batch**2 * (iterations + 2)
    else:
      work = 3 * num_teachers * 2 * batch**2 * iterations
    return value, iterations, work

  return _jax_runners(fn_of(schedule, backend), args, summarize, directions)


def _ott_plain_runners(config, per_teacher, teacher_args, combine, directions):
  """ott-jax as a user calls it: a Python loop over teachers of a jitted per-teacher loss.

  The timed call is the solver calls alone: every teacher's arguments are built beforehand
  (slicing them in the loop would time eager dispatches that are not ott-jax's), and the
  teachers' gradients are combined by a compiled function whose result is waited on too.

  Args:
    config: the run's configuration.
    per_teacher: ``(u, v) -> (points_u, points_v)``, the clouds of one teacher.
    teacher_args: every teacher's arguments ``(u, v)`` (same shapes for every teacher).
    combine: ``[gradient w.r.t. u of each teacher] -> gradient w.r.t. the student's input``
      where every teacher's ``u`` is the same (the sum over teachers, compiled), or ``None``
      where each teacher has its own student points (their gradients are already apart).
    directions: directions to build.

  The forward+backward call returns ``(per-teacher outputs, gradient)``, the gradient
  combined, or the list of the teachers' gradients where ``combine`` is ``None``.
  """
  from ott.geometry import pointcloud
  from ott.tools import sinkhorn_divergence as ott_divergence

  num_teachers = config.num_teachers

  def teacher_loss(u, v):
    s_pts, t_pts = per_teacher(u, v)
    # scale_cost=2 makes PointCloud's ‖x - y‖² our ½‖x - y‖²; epsilon is absolute.
    div, out = ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, s_pts, t_pts, epsilon=config.blur**2, scale_cost=2.0
    )
    return div / num_teachers, jnp.stack(out.n_iters)

  u = teacher_args[0][0]
  batch = u.shape[0]
  runners = {}
  for direction in directions:
    fn = teacher_loss if direction == "fwd" else jax.value_and_grad(teacher_loss, has_aux=True)
    # One compile serves every teacher (same shapes), as jax.jit's cache would.
    compiled, seconds, memory = timing.compile_aot(fn, *teacher_args[0])
    combined = None
    if direction == "fwd+bwd" and combine is not None:
      combined, combine_s, _ = timing.compile_aot(combine, [u] * len(teacher_args))
      seconds += combine_s

    def call(compiled=compiled, combined=combined, direction=direction):
      outs = [compiled(*args) for args in teacher_args]
      if direction == "fwd":
        return jax.block_until_ready(outs)
      grads = [grad for _, grad in outs]
      return jax.block_until_ready((outs, grads if combined is None else combined(grads)))

    def summarize(out, direction=direction):
      outs = out if direction == "fwd" else out[0]
      primal = [_primal(o, direction) for o in outs]
      iters = [np.asarray(p[1]) for p in primal]
      value = sum(float(p[0]) for p in primal)
      total = sum(int(i.sum()) for i in iters)
      return value, max(int(i.max()) for i in iters), 2 * batch**2 * total

    runners[direction] = timing.Runner(
      call, summarize, seconds, memory, "xla temp+output, one teacher"
    )
  return runners


def _pot_runners(config, student, teachers):
  """POT (NumPy float64), forward only."""
  student, teachers = student.astype(np.float64), teachers.astype(np.float64)
  batch = student.shape[0]
  solve = functools.partial(pot.entropic_ot, eps=config.blur**2, stop_threshold=1e-3)

  def call():
    value, iters = 0.0, []
    for teacher in teachers:
      x, y = ot_inputs.np_anchored(student, teacher, config.k)
      terms = [solve(ot_inputs.half_sq(u, v)) for u, v in ((x, y), (x, x), (y, y))]
      value += (terms[0].value - 0.5 * terms[1].value - 0.5 * terms[2].value) / len(teachers)
      iters += [t.iterations for t in terms]
    return value, iters

  def summarize(out):
    value, iters = out
    return value, max(iters), 2 * batch**2 * sum(iters)

  peak = timing.tracemalloc_peak(call)
  return {"fwd": timing.Runner(call, summarize, None, peak, "tracemalloc peak")}


def _geomloss_runners(config, pairs_of, inputs, steps, directions):
  """GeomLoss (torch), one ``SamplesLoss`` call per teacher.

  Args:
    config: the run's configuration.
    pairs_of: ``(torch, u) -> [(x_t, y_t)]``, every teacher's clouds from the student input.
    inputs: NumPy student input (embeddings or points), the one differentiated.
    steps: each teacher's length of GeomLoss's epsilon list (for the counted work).
    directions: directions to build.

  The forward+backward call returns ``(value, gradient w.r.t. inputs)``.
  """
  torch = timing.optional("torch")
  geomloss = timing.optional("geomloss")
  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cpu" and config.torch_threads:
    torch.set_num_threads(config.torch_threads)
  samples_loss = geomloss.SamplesLoss(
    "sinkhorn", p=2, blur=config.blur, scaling=config.scaling, debias=True, backend="tensorized"
  )
  t_inputs = torch.tensor(inputs, device=device)
  batch = inputs.shape[-2]

  def sync():
    if device == "cuda":
      torch.cuda.synchronize()

  def loss(u):
    pairs = pairs_of(torch, u)
    return sum(samples_loss(x, y) for x, y in pairs) / len(pairs)

  def forward():
    with torch.no_grad():
      value = loss(t_inputs)
    sync()
    return value

  def backward():
    u = t_inputs.clone().requires_grad_(True)
    value = loss(u)
    value.backward()
    sync()
    return value.detach(), u.grad

  def summarize(out):
    value = out[0] if isinstance(out, tuple) else out
    return float(value), max(steps), sum(4 * batch**2 * (s + 2) for s in steps)

  kind = "torch.cuda.max_memory_allocated" if device == "cuda" else "not measured (torch CPU)"
  calls = {"fwd": forward, "fwd+bwd": backward}
  runners = {}
  for direction in directions:
    memory = None
    if device == "cuda":
      torch.cuda.reset_peak_memory_stats()
      calls[direction]()
      memory = int(torch.cuda.max_memory_allocated())
    runners[direction] = timing.Runner(calls[direction], summarize, None, memory, kind)
  return runners


def _anchored(config, student, teachers):
  """The loss's anchored clouds ``(student_points, teacher_points)``, each ``[T, B, k]``."""
  return similarity.select_anchors(
    similarity.shift_nonnegative(similarity.cosine_similarity(teachers)),
    similarity.shift_nonnegative(similarity.cosine_similarity(student)),
    "least",
    config.k,
  )[::-1]


def _loss_builders(config, student, teachers) -> dict[str, Callable[[], dict]]:
  """``impl -> () -> {direction: Runner}`` of the end-to-end loss."""
  j_student, j_teachers = jnp.asarray(student), jnp.asarray(teachers)

  def loss_of(schedule, backend):
    def loss(s, t):
      return mot.structural_ot_loss(s, t, k=config.k, schedule=schedule, backend=backend)

    return loss

  def per_teacher(s, t):
    t_pts, s_pts = similarity.select_anchors(
      similarity.shift_nonnegative(jax.lax.stop_gradient(similarity.cosine_similarity(t))),
      similarity.shift_nonnegative(similarity.cosine_similarity(s)),
      "least",
      config.k,
    )
    return s_pts, t_pts

  def pairs_of(torch, s):
    t_teachers = torch.tensor(teachers, device=s.device)
    return [ot_inputs.torch_anchored(torch, s, t, config.k) for t in t_teachers]

  args = (j_student, j_teachers)
  return {
    "fused": lambda: _batched_runners("fused", config, loss_of, args, DIRECTIONS),
    "ott_backend": lambda: _batched_runners("ott", config, loss_of, args, DIRECTIONS),
    "ott_plain": lambda: _ott_plain_runners(
      config,
      per_teacher,
      [(j_student, j_teachers[t]) for t in range(config.num_teachers)],
      lambda grads: functools.reduce(jnp.add, grads),
      DIRECTIONS,
    ),
    "pot": lambda: _pot_runners(config, student, teachers),
    "geomloss": lambda: _geomloss_runners(
      config,
      pairs_of,
      student,
      ot_inputs.geomloss_steps(student, teachers, config.blur, config.scaling, config.k),
      DIRECTIONS,
    ),
  }


def _solve_builders(config, student, teachers) -> dict[str, Callable[[], dict]]:
  """``impl -> () -> {direction: Runner}`` of the solve alone, on precomputed clouds."""
  s_pts, t_pts = jax.jit(functools.partial(_anchored, config))(student, teachers)
  directions = ("fwd+bwd",)

  def solve_of(schedule, backend):
    def solve(s, t):
      # The loss's own solve: its loop as long as the bound on the clouds' diameter says.
      out = mot.sinkhorn_divergence(
        s,
        t,
        schedule=schedule,
        backend=backend,
        max_diameter=similarity.anchored_diameter_bound(s.shape[-1]),
      )
      return jnp.mean(out.value), {"iterations": jnp.max(out.iterations)}

    return solve

  def pairs_of(torch, s):
    t_points = torch.tensor(np.asarray(t_pts), device=s.device)
    return list(zip(s, t_points, strict=True))

  args = (s_pts, t_pts)
  return {
    "fused": lambda: _batched_runners("fused", config, solve_of, args, directions),
    "ott_backend": lambda: _batched_runners("ott", config, solve_of, args, directions),
    "ott_plain": lambda: _ott_plain_runners(
      config,
      lambda s, t: (s, t),
      [(s_pts[t], t_pts[t]) for t in range(config.num_teachers)],
      None,
      directions,
    ),
    "geomloss": lambda: _geomloss_runners(
      config,
      pairs_of,
      np.asarray(s_pts),
      ot_inputs.geomloss_steps(student, teachers, config.blur, config.scaling, config.k),
      directions,
    ),
  }


def relative_difference(grad: np.ndarray, reference: np.ndarray) -> float:
  """``‖grad - reference‖ / ‖reference‖`` (Frobenius)."""
  grad, reference = np.asarray(grad, np.float64), np.asarray(reference, np.float64)
  return float(np.linalg.norm(grad - reference) / np.linalg.norm(reference))


def bench(config, case: str, batch: int, skipped: dict[str, str | None]):
  """Times every available implementation of ``case`` at batch size ``batch``.

  Args:
    config: the run's configuration (see ``experiments/configs/bench_ot.py``).
    case: ``loss`` or ``solve``.
    batch: ``B``.
    skipped: :func:`available`'s answer.

  Returns:
    A list of :class:`~mtpkd_jax.bench.timing.Measurement`. Where GeomLoss ran, the fused
    forward+backward row holds its gradient's agreement with GeomLoss's (``grad_vs_geomloss``).
  """
  if case not in CASES:
    raise ValueError(f"`case` must be one of {CASES}, got {case!r}.")
  student, teachers = ot_inputs.make_embeddings(batch, batch, config.num_teachers, config.dim)
  builders = (_loss_builders if case == "loss" else _solve_builders)(config, student, teachers)
  size = {"B": batch, "T": config.num_teachers, "k": config.k, "d": config.dim}
  runners = {
    (impl, direction): runner
    for impl, build in builders.items()
    if skipped[impl] is None
    for direction, runner in build().items()
  }
  results, gradients = [], {}
  for measurement, out in timing.measure(case, size, runners, config):
    results.append(measurement)
    if measurement.direction == "fwd+bwd" and measurement.impl in ("fused", "geomloss"):
      # GeomLoss's gradient is a torch tensor, on the GPU when torch sees one.
      grad = out[1].cpu() if measurement.impl == "geomloss" else out[1]
      gradients[measurement.impl] = (measurement, np.asarray(grad))
  if len(gradients) == 2:
    fused, grad = gradients["fused"]
    fused.grad_vs_geomloss = relative_difference(grad, gradients["geomloss"][1])
  return results
