"""Why students do not take the teacher's knowledge: diagnostics of run 0 of a finished run.

Run with the same ``--config`` flags as the training, on its ``--workdir``:

  python -m experiments.diagnostics.distillation --workdir /tmp/diag/main \\
      --config.num_runs=1 --config.methods="(...)" --config.baseline=...

Prints, on the training vs validation examples of run 0 (never test):

* the teachers' sharpness: accuracy, mean max softmax probability, mean entropy (nats) and the
  share of examples with max probability > 0.99, of the joint teacher and of each stage-2
  candidate (MT-PKDOT's teachers);
* for every student method of ``config.methods``: each loss term's gradient with respect to the
  student's parameters (global norm, weight included; mean over ``--batches`` training batches of
  the student's batch size, dropout off), at the initial parameters of its stage and at its saved
  (selected) parameters, and the cosine between the task's and the distillation's gradients;
* every method's validation accuracy, and a ridge linear probe on each student's embedding
  (fitted on the training examples, scored on validation);
* whether PKDOT's structural loss tells an embedding aligned with the teacher's from noise:
  its OT term (weight included) on random validation batches, with ``least``, ``most`` and
  ``all`` anchors, for each student's embedding, the teacher's own shuffled across examples,
  and Gaussian noise.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from mtpkd_jax.comparison import runner
from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.methods import backbones, joint, registry, students, unimodal
from mtpkd_jax.methods.context import Memo
from mtpkd_jax.train import checkpoint, parallel

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/synthetic_mtpkdot.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "The finished run's workdir.", required=True)
_BATCHES = flags.DEFINE_integer("batches", 20, "Training batches the gradients are averaged on.")


def probe_accuracy(z, y, train, val, ridge=1e-2):
  """A ridge least-squares classifier on standardised ``z[train]``; its accuracy on ``val``."""
  mean, std = z[train].mean(0), z[train].std(0) + 1e-6
  x, x_val = ((z[rows] - mean) / std for rows in (train, val))
  x, x_val = np.c_[x, np.ones(len(x))], np.c_[x_val, np.ones(len(x_val))]
  w = np.linalg.solve(
    x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ np.eye(y.max() + 1)[y[train]]
  )
  return float(np.mean((x_val @ w).argmax(1) == y[val]))


def sharpness(logits, y):
  """Accuracy, mean max probability, mean entropy, share with max probability > 0.99."""
  p = np.asarray(jax.nn.softmax(logits, axis=-1))
  entropy = -np.sum(p * np.log(np.clip(p, 1e-12, None)), axis=-1)
  top = p.max(-1)
  return np.mean(p.argmax(-1) == y), top.mean(), entropy.mean(), np.mean(top > 0.99)


def gradient_norms(ctx, memo, name, tokens, targets, rng):
  """``{at: {term: norm, "cos(task,distill)": c}}`` at the stage's initial and saved parameters."""
  stage = f"student_{name}"
  method, cfg = registry.get_method(name), registry.method_params(ctx.config, name)
  joint_out, _ = checkpoint.load_stage_output(ctx.workdir, "joint")
  hallucinate = functools.partial(joint.hallucinate, ctx, joint_out["params"])
  model = students.student_model(ctx)
  saved, _ = checkpoint.load_stage_output(ctx.workdir, stage)
  initial = model.init(ctx.stage_rng(stage), tokens[:1], hallucinate)

  @jax.jit
  def term_grads(variables, batch):
    def terms(params):
      outputs, z = model.apply({**variables, "params": params}, batch["x"], hallucinate)
      values, _ = method.distill(cfg, z, outputs, batch, ctx.task)
      values = {"task": task_lib.task_loss(outputs, batch, ctx.task), **values}
      return {t: getattr(cfg, method.weights[t]) * v for t, v in values.items()}

    grads = jax.jacrev(terms)(variables["params"])
    flat = {t: jnp.concatenate([g.ravel() for g in jax.tree.leaves(v)]) for t, v in grads.items()}
    distill = sum(v for t, v in flat.items() if t != "task")
    cos = (
      flat["task"] @ distill / (jnp.linalg.norm(flat["task"]) * jnp.linalg.norm(distill) + 1e-12)
    )
    return {**{t: optax.global_norm(v) for t, v in grads.items()}, "cos(task,distill)": cos}

  size = ctx.config.stages.student.batch_size
  rows = [rng.choice(ctx.split["train"], size, replace=False) for _ in range(_BATCHES.value)]
  out = {}
  for at, variables in (("init", initial), ("saved", saved)):
    norms = [
      term_grads(
        variables, {"x": tokens[r], "y": ctx.dataset.y[r], **{k: v[r] for k, v in targets.items()}}
      )
      for r in rows
    ]
    out[at] = {k: float(np.mean([n[k] for n in norms])) for k in norms[0]}
  return out


def ot_on_validation(ctx, name, z, targets, rng, num_batches=20):
  """Method ``name``'s weighted distillation terms on ``z``, mean over validation batches."""
  method, cfg = registry.get_method(name), registry.method_params(ctx.config, name)
  size = min(ctx.config.stages.student.batch_size, len(ctx.split["val"]))

  @jax.jit
  def term(z_s, batch):
    terms, _ = method.distill(cfg, z_s, None, batch, ctx.task)
    return sum(getattr(cfg, method.weights[t]) * v for t, v in terms.items())

  values = []
  for _ in range(num_batches):
    rows = rng.choice(ctx.split["val"], size, replace=False)
    values.append(float(term(z[rows], {k: v[rows] for k, v in targets.items()})))
  return float(np.mean(values))


def main(argv):
  del argv
  config = _CONFIG.value
  ctx = runner.make_context(
    config, runner.open_dataset(config), 0, _WORKDIR.value, parallel.make_mesh(1)
  )
  memo, y = Memo(), np.asarray(ctx.dataset.y)
  train, val = ctx.split["train"], ctx.split["val"]
  everything = np.arange(len(y))
  print(f"run 0: {len(train)} training, {len(val)} validation examples")

  print("\n## Teacher sharpness (accuracy, mean max p, mean entropy, share max p > 0.99)")
  aligned = students.teacher_targets(ctx, memo, "aligned", "diagnostics")["teacher_out"]
  names = [*(f"stage-2 {m}" for m in ctx.modalities), "stage-2 joint"]
  candidates = {
    "joint teacher (stage 1)": students.teacher_targets(ctx, memo, "joint", "diagnostics")[
      "teacher_out"
    ][:, 0]
  }
  candidates |= {n: aligned[:, t] for t, n in enumerate(names)}
  print(
    "| teacher | split | accuracy | max p | entropy | max p > 0.99 |\n|---|---|---|---|---|---|"
  )
  for n, logits in candidates.items():
    for split, rows in (("train", train), ("val", val)):
      acc, top, ent, sure = sharpness(logits[rows], y[rows])
      print(f"| {n} | {split} | {acc:.3f} | {top:.3f} | {ent:.3f} | {sure:.2f} |")

  print("\n## Validation accuracy and linear probe on the embedding (fit: train, score: val)")
  print("| method | val accuracy | probe val accuracy |\n|---|---|---|")
  teacher = students.teacher_targets(ctx, memo, "joint", "diagnostics")
  print(
    f"| joint_teacher | {np.mean(teacher['teacher_out'][val, 0].argmax(-1) == y[val]):.3f} | "
    f"{probe_accuracy(teacher['teacher_z'][:, 0], y, train, val):.3f} |"
  )
  vis = unimodal.unimodal_predictor(ctx, config.visual)(ctx.dataset.table, val)
  print(f"| visual_only | {np.mean(vis.argmax(-1) == y[val]):.3f} | |")
  tokens = backbones.backbone_tokens(ctx, memo, "diagnostics")[config.visual]
  pooled = tokens.mean(1) if tokens.ndim == 3 else tokens
  print(f"| (frozen visual tokens, mean-pooled) | | {probe_accuracy(pooled, y, train, val):.3f} |")
  student_names = [m for m in config.methods if registry.get_method(m).kind == "student"]
  embeddings = {}
  for m in student_names:
    outputs, z = students.student_predictor(ctx, m)(ctx.dataset.table, everything)
    embeddings[m] = z
    accuracy = np.mean(outputs[val].argmax(-1) == y[val])
    print(f"| {m} | {accuracy:.3f} | {probe_accuracy(z, y, train, val):.3f} |")

  print("\n## PKDOT's OT term on validation batches, by anchors (teacher itself: 0)")
  z_t = teacher["teacher_z"][:, 0]
  embeddings["teacher shuffled"] = z_t[np.random.default_rng(1).permutation(len(z_t))]
  embeddings["Gaussian noise"] = np.random.default_rng(2).normal(size=z_t.shape).astype(np.float32)
  print("| embedding | least | most | all |\n|---|---|---|---|")
  for m, z in embeddings.items():
    losses = [
      ot_on_validation(ctx, f"pkdot:anchors={a}", z, teacher, np.random.default_rng(0))
      for a in ("least", "most", "all")
    ]
    print(f"| {m} | " + " | ".join(f"{v:.3f}" for v in losses) + " |")

  print(f"\n## Weighted term gradient norms (mean of {_BATCHES.value} training batches)")
  print(
    "| method | parameters | "
    + " | ".join(("task", "distillation terms", "cos(task,distill)"))
    + " |"
  )
  print("|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  for m in student_names:
    source = registry.get_method(m).teacher
    targets = students.teacher_targets(ctx, memo, source, "diagnostics")
    for at, norms in gradient_norms(ctx, memo, m, tokens, targets, rng).items():
      distill = ", ".join(
        f"{t} {v:.3g}" for t, v in norms.items() if t not in ("task", "cos(task,distill)")
      )
      print(f"| {m} | {at} | {norms['task']:.3g} | {distill} | {norms['cos(task,distill)']:.2f} |")


if __name__ == "__main__":
  app.run(main)
