"""Tests of the method registry: names, routing, the distillation terms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import synthetic_cmkt, synthetic_mtpkdot
from mtpkd_jax import ot
from mtpkd_jax.comparison import runner
from mtpkd_jax.losses import distill
from mtpkd_jax.methods import objective, registry
from mtpkd_jax.methods import params as params_lib


def test_unimodal_and_named_methods_resolve():
  assert registry.get_method("visual_only", "face").modality == "face"
  assert registry.get_method("physio_only").kind == "unimodal"
  assert registry.get_method("mt_pkdot").teacher == "aligned"
  assert registry.get_method("pkdot").teacher == "joint"
  with pytest.raises(ValueError, match="Unknown method"):
    registry.get_method("mt_pkd0t")


def test_method_variants_override_their_method_parameters():
  config = synthetic_mtpkdot.get_config()
  params = registry.method_params(config, "mt_pkdot:k=10,anchors=most,schedule.params.blur=0.05")
  assert (params.k, params.anchors, params.schedule["params"]["blur"]) == (10, "most", 0.05)
  assert isinstance(params.k, int) and params.schedule["params"]["scaling"] == 0.5
  assert isinstance(params, params_lib.MTPKDOT)
  base = registry.method_params(config, "mt_pkdot")
  assert dataclasses.asdict(base) == config.method_params.mt_pkdot.to_dict()
  assert config.method_params.mt_pkdot.k == 30  # The config itself is unchanged.
  method = registry.get_method("mt_pkdot:gamma=0")
  assert (method.name, method.kind, method.teacher) == ("mt_pkdot:gamma=0", "student", "aligned")
  assert method.distill is registry.METHODS["mt_pkdot"].distill


@pytest.mark.parametrize(
  "name, message",
  [
    ("mt_pkdot:kk=3", "mt_pkdot has no parameter 'kk'"),
    ("mt_pkdot:k=0.5", "k: expected a int, got '0.5'"),
    ("mt_pkdot:anchors=mots", r"anchors must be one of \('least', 'most', 'all'\)"),
    (
      "mt_pkdot:schedule.name=fixd",
      r"variant 'mt_pkdot:schedule.name=fixd': schedule is not a valid Sinkhorn schedule: "
      r"Unknown schedule 'fixd'; expected one of \['anneal', 'fixed', 'tolerance'\]",
    ),
    ("mt_pkdot:k=64", r"k must be in \[1, 64\) .*`config.stages.student.batch_size`"),
    # PKDOT distils the joint teacher alone: it has no routing to vary.
    ("pkdot:routing=softmin", "pkdot has no parameter 'routing'"),
    ("pkdot:tau=2.0", "pkdot has no parameter 'tau'"),
    ("mt_pkdot:k", "'k' is not `key=value`"),
    ("visual_only:k=3", "config.method_params has no 'visual_only'"),
  ],
)
def test_bad_method_variants_name_what_is_wrong(name, message):
  with pytest.raises(ValueError, match=message):
    registry.method_params(synthetic_mtpkdot.get_config(), name)


def _set(config, path, value):
  *parents, leaf = path.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


@pytest.mark.parametrize(
  "get_config, path, value, message",
  [
    (
      synthetic_mtpkdot.get_config,
      "method_params.mt_pkdot.routing",
      "minloss",
      r"Method 'mt_pkdot': `config.method_params.mt_pkdot.routing` must be one of "
      r"\('min_loss', 'joint', 'mean', 'softmin'\), got 'minloss'",
    ),
    (
      synthetic_mtpkdot.get_config,
      "method_params.pkdot.anchors",
      "top",
      r"`config.method_params.pkdot.anchors` must be one of \('least', 'most', 'all'\)",
    ),
    (
      synthetic_mtpkdot.get_config,
      "method_params.mt_pkdot.schedule.name",
      "anneall",
      r"`config.method_params.mt_pkdot.schedule` is not a valid Sinkhorn schedule: "
      r"Unknown schedule 'anneall'; expected one of \['anneal', 'fixed', 'tolerance'\]",
    ),
    (
      synthetic_mtpkdot.get_config,
      "method_params.pkdot.schedule.params.scaling",
      1.5,
      r"`config.method_params.pkdot.schedule` .*`scaling` must be in \(0, 1\)",
    ),
    (
      synthetic_mtpkdot.get_config,
      "stages.student.batch_size",
      16,
      r"Method 'pkdot': `config.method_params.pkdot.k` must be in \[1, 16\) .*got 30",
    ),
    (
      synthetic_cmkt.get_config,
      "method_params.cmkt.decoder.kind",
      "gru",
      r"`config.method_params.cmkt.decoder.kind` must be one of \('mlp', 'transformer'\)",
    ),
    (
      synthetic_mtpkdot.get_config,
      "baseline",
      "visual_onyl",
      r"`config.baseline` 'visual_onyl' is not one of `config.methods` \('joint_teacher'",
    ),
  ],
)
def test_bad_base_parameters_fail_the_up_front_check(get_config, path, value, message):
  config = get_config()
  registry.check_methods(config)
  _set(config, path, value)
  with pytest.raises(ValueError, match=message):
    registry.check_methods(config)


def test_a_run_checks_its_methods_before_it_opens_the_dataset(monkeypatch, tmp_path):
  config = synthetic_mtpkdot.get_config("pain_binary,smoke")
  config.method_params.mt_pkdot.routing = "minloss"
  monkeypatch.setattr(runner, "open_dataset", lambda _: pytest.fail("opened the dataset"))
  with pytest.raises(ValueError, match="config.method_params.mt_pkdot.routing"):
    runner.run(config, tmp_path)


@pytest.mark.parametrize(
  "arg", ["pain_binary", "pain_binary,ablation", "pain_binary,smoke,ablation"]
)
def test_pkdot_has_only_the_parameters_it_uses(arg):
  config = synthetic_mtpkdot.get_config(arg)
  registry.check_methods(config)
  assert {f.name for f in dataclasses.fields(registry.method_params(config, "pkdot"))} == {
    "alpha",
    "beta",
    "gamma",
    "anchors",
    "k",
    "backend",
    "schedule",
    "unlabelled",
    "lr_scale",
  }


def test_only_students_have_variants():
  with pytest.raises(ValueError, match="only students and CMKT methods have variants"):
    registry.get_method("joint_teacher:k=3")


@pytest.mark.parametrize("routing", params_lib.ROUTINGS)
def test_routing_weights(routing):
  losses = jnp.array([0.7, 0.2, 0.9])
  weights = np.asarray(registry.route(routing, losses, tau=0.5))
  want = {
    "min_loss": [0.0, 1.0, 0.0],
    "joint": [0.0, 0.0, 1.0],
    "mean": [1 / 3] * 3,
    "softmin": np.exp(-np.array([0.7, 0.2, 0.9]) / 0.5)
    / np.exp(-np.array([0.7, 0.2, 0.9]) / 0.5).sum(),
  }[routing]
  np.testing.assert_allclose(weights, want, rtol=1e-6)


def test_unknown_routing_raises():
  with pytest.raises(ValueError, match="routing"):
    registry.route("max_loss", jnp.ones(2), 1.0)


def _ot_cfg(**kw):
  return params_lib.MTPKDOT(
    **{
      "unlabelled": False,
      "lr_scale": 1.0,
      "alpha": 0.8,
      "beta": 0.2,
      "gamma": 0.2,
      "anchors": "least",
      "k": 3,
      "backend": "fused",
      "schedule": {"name": "anneal", "params": {"blur": 0.1, "scaling": 0.5}},
      "routing": "min_loss",
      "tau": 1.0,
      **kw,
    }
  )


def _loss(name, cfg, task_value, z_s, outputs_s, batch):
  """A student's loss for a given task loss, as the step sums it, and its logged terms."""
  method = registry.METHODS[name]
  terms, metrics = method.distill(cfg, z_s, outputs_s, batch, "classification")
  terms = {"task": task_value, **terms}
  return objective.total(terms, method.weights, cfg), {**terms, **metrics}


def test_mt_pkdot_routes_to_the_candidate_with_the_lowest_task_loss():
  rng = np.random.default_rng(0)
  z_s = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
  teacher_z = jnp.asarray(rng.normal(size=(8, 3, 5)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 2, 8))
  # Candidate 1 predicts the labels perfectly; 0 and 2 are confidently wrong.
  right = 10.0 * (2 * np.eye(2)[np.asarray(labels)] - 1)
  teacher_out = jnp.asarray(np.stack([-right, right, -right], axis=1), jnp.float32)
  batch = {"teacher_z": teacher_z, "teacher_out": teacher_out, "y": labels}
  cfg = _ot_cfg(routing="min_loss", tau=1.0)
  loss, metrics = _loss("mt_pkdot", cfg, 0.5, z_s, None, batch)
  ot_value, aux = ot.structural_ot_loss(z_s, jnp.swapaxes(teacher_z, 0, 1)[1:2], k=3)
  assert int(metrics["routed_teacher"]) == 1
  np.testing.assert_allclose(metrics["ot"], ot_value, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.8 * 0.5 + 0.2 * ot_value + 0.2 * aux["centroid"][0], rtol=1e-5)


def test_pkdot_distills_the_joint_teacher_only():
  rng = np.random.default_rng(1)
  z_s = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
  z_j = jnp.asarray(rng.normal(size=(8, 1, 5)), jnp.float32)
  batch = {"teacher_z": z_j, "teacher_out": jnp.zeros((8, 1, 2)), "y": jnp.zeros(8, int)}
  cfg = _ot_cfg(alpha=1.0, beta=0.6, gamma=0.0)
  loss, metrics = _loss("pkdot", cfg, 0.25, z_s, None, batch)
  want, _ = ot.structural_ot_loss(z_s, jnp.swapaxes(z_j, 0, 1), k=3)
  np.testing.assert_allclose(loss, 0.25 + 0.6 * want, rtol=1e-5)


@pytest.mark.parametrize(
  "name,reference",
  [
    ("pkd", lambda z_s, z_t, *_: distill.cosine_distance(z_s, z_t)),
    ("spkd", lambda z_s, z_t, *_: distill.similarity_preserving(z_s, z_t)),
    ("rkd", lambda z_s, z_t, *_: distill.relational(z_s, z_t)),
    ("logit_kd", lambda z_s, z_t, out_s, out_t: distill.logit_kd(out_s, out_t, 4.0)),
  ],
)
def test_point_to_point_baselines_distill_the_joint_teacher(name, reference):
  rng = np.random.default_rng(2)
  z_s, z_t = (jnp.asarray(rng.normal(size=(6, 5)), jnp.float32) for _ in range(2))
  out_s, out_t = (jnp.asarray(rng.normal(size=(6, 2)), jnp.float32) for _ in range(2))
  # The joint teacher is the last candidate; the others must be ignored.
  batch = {
    "teacher_z": jnp.stack([z_s, z_t], axis=1),
    "teacher_out": jnp.stack([out_s, out_t], axis=1),
    "y": jnp.zeros(6, int),
  }
  cfg = params_lib.LogitKD(unlabelled=False, lr_scale=1.0, alpha=0.8, beta=0.2, temperature=4.0)
  loss, metrics = _loss(name, cfg, 0.3, z_s, out_s, batch)
  want = reference(z_s, z_t, out_s, out_t)
  np.testing.assert_allclose(metrics["kd"], want, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.8 * 0.3 + 0.2 * want, rtol=1e-5)


def test_the_main_jobs_control_trains_the_student_network_on_its_task_loss_alone():
  control = synthetic_mtpkdot.NO_DISTILLATION
  assert control in synthetic_mtpkdot.get_config().methods
  assert control in synthetic_mtpkdot.get_config("pain_binary,ablation").methods
  method = registry.get_method(control)
  assert (method.kind, method.teacher) == ("student", "joint")
  cfg = registry.method_params(synthetic_mtpkdot.get_config(), control)
  terms = {"task": jnp.float32(0.7), "kd": jnp.float32(0.3)}
  loss, grads = jax.value_and_grad(lambda t: objective.total(t, method.weights, cfg))(terms)
  np.testing.assert_allclose(loss, cfg.alpha * 0.7, rtol=1e-6)
  np.testing.assert_allclose(grads["task"], cfg.alpha, rtol=1e-6)
  assert float(grads["kd"]) == 0.0
