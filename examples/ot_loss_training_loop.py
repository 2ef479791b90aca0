"""MT-PKDOT's structural OT loss in your own Flax/optax training loop.

A small Flax student learns the similarity structure of two frozen "teachers" (fixed random
embeddings of the same inputs) through :func:`mtpkd_jax.ot.structural_ot_loss` with its
default schedule (GeomLoss's annealing, ``Anneal(blur=0.1, scaling=0.5)``)::

  python examples/ot_loss_training_loop.py

It prints the loss on a held-out batch before and after 60 jit-compiled steps (a few seconds
on a CPU, mostly compilation). The teachers' embeddings are arguments of the step, constants
to the loss: only the student's parameters are trained.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mtpkd_jax import ot

NUM_EXAMPLES = 512
INPUT_DIM = 16
BATCH_SIZE = 64  # The loss compares the B x B similarity matrices of a batch; k < B.


class Student(nn.Module):
  """A two-layer MLP: inputs ``[B, INPUT_DIM]`` -> embeddings ``[B, features]``."""

  features: int = 16

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Returns the embeddings of ``x``, shape ``[B, features]``."""
    return nn.Dense(self.features)(nn.gelu(nn.Dense(64)(x)))


def make_data(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Inputs ``[N, INPUT_DIM]`` and two frozen teachers' embeddings ``[2, N, 32]`` of them."""
  x_key, *teacher_keys = jax.random.split(key, 3)
  x = jax.random.normal(x_key, (NUM_EXAMPLES, INPUT_DIM))
  teachers = []
  for teacher_key in teacher_keys:
    w1, w2 = jax.random.normal(teacher_key, (2, INPUT_DIM, 32)) / jnp.sqrt(INPUT_DIM)
    teachers.append(jnp.tanh(x @ w1) + 0.5 * jnp.sin(x @ w2))
  return x, jnp.stack(teachers)


def train(num_steps: int = 60, seed: int = 0) -> tuple[float, float]:
  """Trains the student on the OT loss alone.

  Args:
    num_steps: training steps, each on a batch drawn from the training examples.
    seed: the seed of the data, the initialisation and the batches.

  Returns:
    ``(before, after)``: the loss on the held-out batch before and after training.
  """
  key = jax.random.key(seed)
  x, teachers = make_data(jax.random.fold_in(key, 0))
  # The last batch is held out; the steps draw from the others.
  x_train, teachers_train = x[:-BATCH_SIZE], teachers[:, :-BATCH_SIZE]
  x_test, teachers_test = x[-BATCH_SIZE:], teachers[:, -BATCH_SIZE:]

  model = Student()
  params = model.init(jax.random.fold_in(key, 1), x_test)
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(params)

  def loss_fn(params, x, teachers):
    loss, _ = ot.structural_ot_loss(model.apply(params, x), teachers, anchors="least", k=30)
    return loss

  @jax.jit
  def step(params, opt_state, step_key):
    idx = jax.random.choice(step_key, len(x_train), (BATCH_SIZE,), replace=False)
    loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], teachers_train[:, idx])
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  evaluate = jax.jit(loss_fn)
  before = float(evaluate(params, x_test, teachers_test))
  batch_key = jax.random.fold_in(key, 2)
  for i in range(num_steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(batch_key, i))
    if i % 10 == 0 or i == num_steps - 1:
      print(f"step {i:3d}: training loss {float(loss):.4f}")
  after = float(evaluate(params, x_test, teachers_test))
  return before, after


if __name__ == "__main__":
  before, after = train()
  print(f"held-out loss: before {before:.4f}, after {after:.4f}")
