"""Tests of structural_ot_loss: invariances, gradients, compilation, parallelism, errors."""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mtpkd_jax.ot import loss as loss_lib
from mtpkd_jax.ot import schedules
from tests.ot import references


def _embeddings(seed, b=12, d_s=6, d_t=9, t=3):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(b, d_s)), rng.normal(size=(t, b, d_t))


def _structured_embeddings(seed, structure, b=64, d_s=16, d_t=16, t=2):
  """``weak``: teachers ``0.3 z_s W + noise``; ``strong``: both around 8 shared clusters."""
  rng = np.random.default_rng(seed)
  if structure == "weak":
    student = rng.normal(size=(b, d_s))
    mix = rng.normal(size=(t, d_s, d_t))
    return student, 0.3 * np.einsum("bd,tde->tbe", student, mix) + rng.normal(size=(t, b, d_t))
  labels = rng.integers(8, size=b)
  student = rng.normal(size=(8, d_s))[labels] + 0.1 * rng.normal(size=(b, d_s))
  return student, rng.normal(size=(t, 8, d_t))[:, labels] + 0.1 * rng.normal(size=(t, b, d_t))


def _np_anchored(student, teacher, k):
  """Cosine matrices ``[B, B]``, the unit student rows, norms, and anchors chosen on S_T."""
  norm = np.linalg.norm(student, axis=1, keepdims=True)
  unit, unit_t = student / norm, teacher / np.linalg.norm(teacher, axis=1, keepdims=True)
  s_s, s_t = unit @ unit.T, unit_t @ unit_t.T
  return s_s, s_t, unit, norm, np.argsort(s_t, axis=1)[:, :k]


def _np_structural(student, teacher, k, blur, scaling, centroid_weight):
  """``(loss, gradient of its OT term w.r.t. student)`` of one teacher, from NumPy pieces.

  The OT term and its gradient w.r.t. the student's anchored points are the GeomLoss
  transcription's; the chain rule back to the student is written out: the anchors gather,
  the shift subtracts the matrix's minimum entry, ``S = U Uᵀ`` and ``U = z / ‖z‖``.
  """
  s_s, s_t, unit, norm, idx = _np_anchored(student, teacher, k)
  t_pts = np.take_along_axis(s_t - s_t.min(), idx, 1)
  u_pts = np.take_along_axis(s_s - s_s.min(), idx, 1)
  ot_value, _, grad_pts, *_ = references.geomloss_sinkhorn(u_pts, t_pts, blur, scaling)
  centroid = np.linalg.norm(s_t.mean(0) - s_s.mean(0))
  grad_s = np.zeros_like(s_s)
  np.put_along_axis(grad_s, idx, grad_pts, 1)
  minimum = s_s == s_s.min()
  grad_s -= grad_pts.sum() * minimum / minimum.sum()
  grad_unit = (grad_s + grad_s.T) @ unit
  grad = (grad_unit - unit * np.sum(unit * grad_unit, axis=1, keepdims=True)) / norm
  return ot_value + centroid_weight * centroid, grad


def test_loss_equals_numpy_composition_with_weights_and_centroid():
  student, teachers = _embeddings(0)
  weights = np.array([0.2, 0.5, 0.3])
  with jax.enable_x64(True):
    loss, aux = jax.jit(functools.partial(loss_lib.structural_ot_loss, k=5, centroid_weight=0.7))(
      jnp.asarray(student), jnp.asarray(teachers), teacher_weights=jnp.asarray(weights)
    )
  want = [_np_structural(student, teachers[t], 5, 0.1, 0.5, 0.7)[0] for t in range(3)]
  np.testing.assert_allclose(loss, np.dot(weights, want), rtol=1e-9)
  assert aux["ot"].shape == aux["centroid"].shape == (3,)
  assert bool(aux["finite"])


def test_loss_of_teacher_with_itself_is_zero():
  student, _ = _embeddings(1)
  loss, _ = jax.jit(functools.partial(loss_lib.structural_ot_loss, k=4, centroid_weight=1.0))(
    jnp.asarray(student), jnp.asarray(student)[None]
  )
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)


@pytest.mark.parametrize("anchors", ["least", "most", "all"])
def test_permuting_the_batch_leaves_the_loss_unchanged(anchors):
  student, teachers = _embeddings(2)
  perm = np.random.default_rng(2).permutation(student.shape[0])
  f = functools.partial(
    loss_lib.structural_ot_loss,
    anchors=anchors,
    k=4,
    centroid_weight=0.3,
    schedule=schedules.Tolerance(threshold=1e-7, epsilon=0.01),
  )
  with jax.enable_x64(True):
    base, _ = f(jnp.asarray(student), jnp.asarray(teachers))
    permuted, _ = f(jnp.asarray(student[perm]), jnp.asarray(teachers[:, perm]))
  np.testing.assert_allclose(base, permuted, rtol=1e-7)


def test_gradient_matches_central_finite_differences_in_float64():
  student, teachers = _embeddings(3, b=8)
  schedule = schedules.Tolerance(threshold=1e-12, max_iterations=50_000, epsilon=0.05)
  with jax.enable_x64(True):
    s, t = jnp.asarray(student), jnp.asarray(teachers)
    f = jax.jit(
      lambda s: loss_lib.structural_ot_loss(s, t, k=3, schedule=schedule, centroid_weight=0.5)[0]
    )
    grad = jax.grad(f)(s)
    h = 1e-6
    for idx in [(0, 0), (3, 2), (7, 5), (5, 1)]:
      bump = jnp.zeros_like(s).at[idx].set(h)
      np.testing.assert_allclose(
        grad[idx], (f(s + bump) - f(s - bump)) / (2 * h), rtol=1e-4, atol=1e-8
      )


def _loss_value_and_grad(student, teachers, k, schedule):
  return jax.jit(
    jax.value_and_grad(
      lambda s: loss_lib.structural_ot_loss(s, jnp.asarray(teachers), k=k, schedule=schedule)[0]
    )
  )(jnp.asarray(student))


@pytest.mark.parametrize("structure", ["weak", "strong"])
@pytest.mark.parametrize("blur,scaling", [(0.1, 0.5), (0.2, 0.7)])
def test_anneal_gradient_equals_geomloss_through_the_whole_loss(structure, blur, scaling):
  student, teachers = _structured_embeddings(14, structure)
  with jax.enable_x64(True):
    value, grad = _loss_value_and_grad(
      student, teachers, 30, schedules.Anneal(blur=blur, scaling=scaling)
    )
  want = [_np_structural(student, teacher, 30, blur, scaling, 0.0) for teacher in teachers]
  want_grad = np.mean([w[1] for w in want], axis=0)
  np.testing.assert_allclose(value, np.mean([w[0] for w in want]), rtol=1e-9)
  np.testing.assert_allclose(np.linalg.norm(grad), np.linalg.norm(want_grad), rtol=1e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-6 * np.abs(want_grad).max())


@pytest.mark.parametrize("batch", [64, 128])
def test_float32_anneal_gradient_is_geomloss_to_1e_3(batch):
  student, teachers = _structured_embeddings(15, "weak", b=batch, t=1)
  _, grad = _loss_value_and_grad(
    student.astype(np.float32), teachers.astype(np.float32), 30, schedules.Anneal()
  )
  _, want = _np_structural(student, teachers[0], 30, 0.1, 0.5, 0.0)
  np.testing.assert_allclose(np.linalg.norm(grad), np.linalg.norm(want), rtol=1e-3)
  np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def _np_points(student, teacher, k):
  """The student's and the teacher's anchored clouds, each ``[B, k]``."""
  s_s, s_t, _, _, idx = _np_anchored(student, teacher, k)
  return np.take_along_axis(s_s - s_s.min(), idx, 1), np.take_along_axis(s_t - s_t.min(), idx, 1)


def _np_schedule_length(student, teacher, k, blur, scaling):
  """Length of GeomLoss's epsilon list for one teacher's anchored clouds."""
  points = np.concatenate(_np_points(student, teacher, k))
  diameter = np.linalg.norm(points.max(0) - points.min(0))
  return len(references.geomloss_epsilon_list(diameter, blur, scaling))


def _bound_length(k, blur, scaling):
  """GeomLoss's schedule length for the widest anchored clouds: every coordinate in [0, 2]."""
  return len(references.geomloss_epsilon_list(2 * np.sqrt(k), blur, scaling))


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_anneal_loss_masks_the_steps_past_each_teachers_own_schedule(backend, monkeypatch):
  # At scaling 0.7 the teachers' schedules have 14, 13 and 14 steps, the bound's 16: the loop
  # runs 16 steps, the second teacher's last 3 and everyone's last 2 masked (on a CPU the
  # last 2 skipped). The GPU form (faked): the two-pass log-sum-exp, every step masked.
  if backend == "gpu":
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  student, teachers = _structured_embeddings(0, "strong", t=3)
  blur, scaling = 0.1, 0.7
  lengths = [_np_schedule_length(student, t, 30, blur, scaling) for t in teachers]
  assert lengths == [14, 13, 14] and _bound_length(30, blur, scaling) == 16
  schedule = schedules.Anneal(blur=blur, scaling=scaling)
  with jax.enable_x64(True):
    (value, aux), grad = jax.jit(
      jax.value_and_grad(
        lambda s: loss_lib.structural_ot_loss(s, jnp.asarray(teachers), schedule=schedule),
        has_aux=True,
      )
    )(jnp.asarray(student))
  want = [_np_structural(student, t, 30, blur, scaling, 0.0) for t in teachers]
  want_ot = [
    references.geomloss_sinkhorn(*_np_points(student, t, 30), blur, scaling)[0] for t in teachers
  ]
  # The data's own schedule length, not the bound's.
  assert int(aux["iterations"]) == max(lengths)
  np.testing.assert_allclose(aux["ot"], want_ot, rtol=1e-9)
  np.testing.assert_allclose(value, np.mean([w[0] for w in want]), rtol=1e-9)
  want_grad = np.mean([w[1] for w in want], axis=0)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-6 * np.abs(want_grad).max())


def _default_loss_hlo(student, teachers):
  """Compiled HLO of the default loss's forward and backward."""
  fn = jax.jit(jax.value_and_grad(loss_lib.structural_ot_loss, has_aux=True))
  return fn.lower(jnp.asarray(student, jnp.float32), jnp.asarray(teachers, jnp.float32)).compile()


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_default_loss_loops_have_a_known_trip_count(backend, monkeypatch):
  # XLA runs a while loop of known trip count without asking the host at each trip (its
  # GPU runtime's WhileThunk); a loop whose predicate reads the data asks once a trip. The
  # GPU form (faked) has no conditional either: each is a round trip to the host there.
  student, teachers = _structured_embeddings(1, "weak", b=48, t=2)
  if backend == "gpu":
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  hlo = _default_loss_hlo(student, teachers).as_text()
  loops = [line for line in hlo.splitlines() if " while(" in line]
  assert loops
  trips = [re.search(r'"known_trip_count":\{"n":"(\d+)"\}', line) for line in loops]
  assert all(trips), [line[-200:] for line, t in zip(loops, trips, strict=True) if not t]
  assert max(int(t.group(1)) for t in trips) == _bound_length(30, 0.1, 0.5) == 9
  assert (" conditional(" in hlo) == (backend == "cpu")


def test_envelope_gradient_matches_unrolled_at_convergence():
  student, teachers = _embeddings(4, b=8)
  schedule = schedules.Fixed(iterations=600, epsilon=0.05)
  with jax.enable_x64(True):
    grads = [
      jax.jit(
        jax.grad(
          lambda s, g=g: loss_lib.structural_ot_loss(  # noqa: B023
            s, jnp.asarray(teachers), k=3, schedule=schedule, gradient=g
          )[0]
        )
      )(jnp.asarray(student))
      for g in ("envelope", "unrolled")
    ]
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-10)


def test_backends_give_one_answer_at_convergence():
  student, teachers = _embeddings(5)
  schedule = schedules.Tolerance(threshold=1e-7, max_iterations=20_000, epsilon=0.05)
  with jax.enable_x64(True):
    values, grads = zip(
      *(
        jax.jit(
          jax.value_and_grad(
            lambda s, b=b: loss_lib.structural_ot_loss(  # noqa: B023
              s, jnp.asarray(teachers), k=5, schedule=schedule, backend=b
            )[0]
          )
        )(jnp.asarray(student))
        for b in ("fused", "ott")
      ),
      strict=True,
    )
  np.testing.assert_allclose(values[0], values[1], rtol=1e-5)
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-6)


def test_compiles_once_per_shape():
  student, teachers = _embeddings(6)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(s, t):
    return jax.value_and_grad(loss_lib.structural_ot_loss, has_aux=True)(s, t, k=4)

  for seed in range(3):
    s, t = _embeddings(seed)
    step(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32))


def test_no_host_callback_on_the_hot_path():
  student, teachers = _embeddings(7)
  jaxpr = str(
    jax.make_jaxpr(lambda s, t: loss_lib.structural_ot_loss(s, t, k=4))(
      jnp.asarray(student, jnp.float32), jnp.asarray(teachers, jnp.float32)
    )
  )
  assert "callback" not in jaxpr


def test_works_under_vmap():
  rng = np.random.default_rng(8)
  students = jnp.asarray(rng.normal(size=(4, 10, 5)), jnp.float32)
  teachers = jnp.asarray(rng.normal(size=(4, 2, 10, 7)), jnp.float32)
  f = jax.jit(functools.partial(loss_lib.structural_ot_loss, k=3))
  batched, _ = jax.jit(jax.vmap(f))(students, teachers)
  for i in range(4):
    np.testing.assert_allclose(batched[i], f(students[i], teachers[i])[0], rtol=1e-5)


def test_works_inside_shard_map_on_eight_devices():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  rng = np.random.default_rng(9)
  students = jnp.asarray(rng.normal(size=(8, 10, 5)), jnp.float32)
  teachers = jnp.asarray(rng.normal(size=(8, 2, 10, 7)), jnp.float32)

  def per_device(s, t):
    value, _ = loss_lib.structural_ot_loss(s[0], t[0], k=3)
    return jax.lax.pmean(value, "data")[None]

  sharded = jax.jit(
    jax.shard_map(
      per_device, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P("data"), check_vma=False
    )
  )
  got = sharded(students, teachers)
  f = jax.jit(functools.partial(loss_lib.structural_ot_loss, k=3))
  want = np.mean([f(students[i], teachers[i])[0] for i in range(8)])
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize(
  "student_shape,teacher_shape,kwargs,match",
  [
    ((8,), (1, 8, 4), {}, "student"),
    ((8, 4), (8, 4), {}, "teachers"),
    ((8, 4), (2, 7, 4), {}, "batch size"),
    ((8, 4), (2, 8, 4), {"k": 8}, "`k`"),
    ((8, 4), (2, 8, 4), {"k": 0}, "`k`"),
    ((8, 4), (2, 8, 4), {"k": 3, "anchors": "top"}, "anchors"),
    ((8, 4), (2, 8, 4), {"k": 3, "teacher_weights": jnp.ones(3)}, "teacher_weights"),
    ((8, 4), (2, 8, 4), {"k": 3, "backend": "geomloss"}, "backend"),
    ((1, 4), (2, 1, 4), {"k": 3}, "at least 2"),
  ],
)
def test_bad_input_raises_value_error_naming_the_argument(
  student_shape, teacher_shape, kwargs, match
):
  with pytest.raises(ValueError, match=match):
    jax.jit(lambda s, t: loss_lib.structural_ot_loss(s, t, **kwargs))(
      jnp.ones(student_shape), jnp.ones(teacher_shape)
    )


@pytest.mark.parametrize(
  "make_schedule,match",
  [
    (lambda: schedules.Anneal(blur=0.0), "blur"),
    (lambda: schedules.Tolerance(epsilon=0.0), "epsilon"),
    (lambda: schedules.Fixed(epsilon=-1.0), "epsilon"),
  ],
)
def test_non_positive_blur_or_epsilon_raises(make_schedule, match):
  with pytest.raises(ValueError, match=match):
    loss_lib.structural_ot_loss(
      jnp.ones((4, 2)), jnp.ones((1, 4, 2)), k=2, schedule=make_schedule()
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embeddings_give_nan_loss_and_say_so(bad):
  student, teachers = _embeddings(10)
  student[2, 1] = bad
  loss, aux = jax.jit(lambda s, t: loss_lib.structural_ot_loss(s, t, k=4))(
    jnp.asarray(student, jnp.float32), jnp.asarray(teachers, jnp.float32)
  )
  assert np.isnan(loss)
  assert not bool(aux["finite"])


def test_debug_flag_raises_on_non_finite_embeddings():
  student, teachers = _embeddings(11)
  teachers[0, 0, 0] = np.nan
  f = jax.jit(lambda s, t: loss_lib.structural_ot_loss(s, t, k=4, debug=True)[0])
  with pytest.raises(Exception, match="non-finite"):
    jax.block_until_ready(f(jnp.asarray(student, jnp.float32), jnp.asarray(teachers, jnp.float32)))


@pytest.mark.parametrize(
  "case",
  ["batch_of_two", "identical_embeddings", "tiny_epsilon", "zero_embeddings"],
)
def test_edge_cases_stay_finite(case):
  rng = np.random.default_rng(12)
  kwargs = {"k": 3}
  student = rng.normal(size=(10, 4))
  teachers = rng.normal(size=(2, 10, 4))
  if case == "batch_of_two":
    student, teachers, kwargs = student[:2], teachers[:, :2], {"k": 1}
  elif case == "identical_embeddings":
    student = np.ones_like(student)
    teachers = np.ones_like(teachers)
  elif case == "tiny_epsilon":
    kwargs["schedule"] = schedules.Tolerance(epsilon=1e-4, max_iterations=200)
  else:
    student = np.zeros_like(student)
  s, t = jnp.asarray(student, jnp.float32), jnp.asarray(teachers, jnp.float32)
  (loss, aux), grad = jax.jit(
    jax.value_and_grad(
      lambda s: loss_lib.structural_ot_loss(s, t, centroid_weight=0.5, **kwargs), has_aux=True
    )
  )(s)
  assert np.isfinite(loss)
  assert np.all(np.isfinite(grad))
  assert bool(aux["finite"])


def test_teacher_embeddings_get_no_gradient():
  student, teachers = _embeddings(13)
  grad = jax.jit(
    jax.grad(
      lambda t: loss_lib.structural_ot_loss(
        jnp.asarray(student, jnp.float32), t, k=4, centroid_weight=1.0
      )[0]
    )
  )(jnp.asarray(teachers, jnp.float32))
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("anchors", ["least", "most"])
def test_structural_plan_is_the_numpy_pipeline_solved_by_pot(anchors):
  """Cosine, shift, anchors on S_T, cost ``½‖x - y‖²`` and POT's converged entropic plan."""
  pot = pytest.importorskip("ot")
  student, teachers = _embeddings(4)
  teacher, b, k, eps = teachers[0], len(student), 4, 0.05
  s_s, s_t, *_ = _np_anchored(student, teacher, k)
  order = np.argsort(s_t, axis=1)
  idx = order[:, :k] if anchors == "least" else order[:, ::-1][:, :k]
  t_pts = np.take_along_axis(s_t - s_t.min(), idx, 1)
  u_pts = np.take_along_axis(s_s - s_s.min(), idx, 1)
  uniform = np.full(b, 1 / b)
  want = pot.sinkhorn(
    uniform,
    uniform,
    references.half_sq_dist(u_pts, t_pts),
    eps,
    method="sinkhorn_log",
    stopThr=1e-12,
    numItermax=100_000,
  )
  plan = loss_lib.structural_plan(
    jnp.asarray(student, jnp.float32),
    jnp.asarray(teacher, jnp.float32),
    anchors=anchors,
    k=k,
    epsilon=eps,
  )
  assert plan.shape == (b, b)
  # Solved to an L1 marginal error of 1e-3 (Tolerance's default).
  np.testing.assert_allclose(plan, want, atol=1e-3 / b)
  np.testing.assert_allclose(plan.sum(), 1.0, rtol=1e-5)
  assert np.abs(np.asarray(plan) - want).max() < 0.05 * want.max()
