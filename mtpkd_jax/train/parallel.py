"""Data parallelism: one per-device step, run with `jax.shard_map` or `jax.pmap`.

A per-device step has the signature `step(state, batch, rng, frozen) -> (state, metrics)`
and averages what must agree across devices with `lax.pmean(..., DATA_AXIS)` (see
`mtpkd_jax.train.step.make_train_step`). The same function runs

* under `data_parallel`, as `jax.jit(jax.shard_map(...))` on a 1-D `("data",)` mesh: state,
  rng and frozen inputs replicated, every batch leaf split along its leading axis;
* under `pmap_step`, as `jax.pmap(..., axis_name="data")`: state replicated with a leading
  device axis (`replicate`), batch reshaped to `[devices, per_device_batch, ...]`
  (`split_batch`).

`frozen` is a slot for inputs the step reads but never trains or returns, e.g. a teacher's
parameters: it is replicated, not donated, not differentiated and not part of the state, so
it never reaches the student's checkpoint.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# Defined with the dropout that reads it, so that models need not import `train`.
from mtpkd_jax.models.dropout import DATA_AXIS

PyTree = Any
StepFn = Callable[[PyTree, PyTree, jax.Array, PyTree], tuple[PyTree, PyTree]]


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """Builds a 1-D `("data",)` mesh over the first `num_devices` devices of every process.

  The devices are ordered by process, so that process `p`'s devices hold block `p` of every
  global batch, the rows it reads (`distributed.process_rows`). The axis type is `Auto`, not
  the `Explicit` default: ott's Sinkhorn loop, which the structural losses call inside the
  step, does not trace under explicit sharding.

  Args:
    num_devices: How many devices to use; all of `jax.devices()` when `None`. With several
      processes, only `None` or all devices.

  Returns:
    A `jax.sharding.Mesh` with the single axis `"data"` of size `num_devices`.

  Raises:
    ValueError: If `num_devices` is not between 1 and `jax.device_count()`, or leaves out
      a process's devices.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  num_devices = len(devices) if num_devices is None else num_devices
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available.")
  if jax.process_count() > 1 and num_devices != len(devices):
    raise ValueError(
      f"num_devices={num_devices}, but a run of {jax.process_count()} processes uses all "
      f"{len(devices)} devices; leave num_devices unset."
    )
  return jax.sharding.Mesh(
    np.array(devices[:num_devices]), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
  )


def check_batch_divisible(batch: PyTree, num_devices: int) -> None:
  """Checks that every leaf of a global batch splits evenly over `num_devices`.

  Args:
    batch: Pytree (typically a dict) of arrays of shape `[global_batch, ...]`.
    num_devices: Number of devices the batch is split over.

  Raises:
    ValueError: Naming the offending batch key, its leading size and the device count,
      if a leaf is a scalar or its leading size is not a multiple of `num_devices`.
  """
  for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
    shape = np.shape(leaf)
    if not shape or shape[0] % num_devices:
      size = shape[0] if shape else "none (scalar)"
      raise ValueError(
        f"Batch key {jax.tree_util.keystr(path)!r} has leading size {size}, which is "
        f"not divisible by the {num_devices} devices; use a global batch size that "
        f"is a multiple of {num_devices} (e.g. drop the last partial batch)."
      )


def shard_batch(batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """Assembles the global batch on `mesh` from this process's rows of it.

  With one process the rows are the whole batch. With several, process `p` passes block `p`
  of the global batch (`distributed.process_rows`), and the global batch is built with
  `jax.make_array_from_process_local_data`, leaves split along their leading axis.

  Args:
    batch: Pytree of this process's rows, arrays of shape `[global_batch // processes, ...]`.
    mesh: Mesh with a `"data"` axis (`make_mesh`).

  Returns:
    The global batch as `jax.Array`s sharded `PartitionSpec("data")`.

  Raises:
    ValueError: If the rows do not split evenly over this process's devices of the mesh
      (see `check_batch_divisible`).
  """
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  check_batch_divisible(batch, local_devices)
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def replicate_on_mesh(tree: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """Places `tree` (a state, an rng, frozen inputs) fully replicated on `mesh`.

  With several processes, every process passes the same values (host arrays, or arrays on
  its own devices) and each places its copies on its devices of `mesh`.
  """
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(lambda x: _replicate(x, sharding), tree)


def _replicate(x, sharding: NamedSharding) -> jax.Array:
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    data = _replicate(jax.random.key_data(x), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def data_parallel(
  per_device_step: StepFn, mesh: jax.sharding.Mesh, *, donate_state: bool = True
) -> StepFn:
  """Runs a per-device step data-parallel over `mesh` with `jax.shard_map`.

  Args:
    per_device_step: `step(state, batch, rng, frozen) -> (state, metrics)` written for one
      device's shard of the batch, reducing over the `"data"` axis with `lax.pmean`.
      Its returned state and metrics must be identical on every device.
    mesh: 1-D mesh with axis `"data"` (see `make_mesh`).
    donate_state: Whether the input state's buffers are donated to the output.

  Returns:
    A jitted `step(state, batch, rng, frozen=None) -> (state, metrics)` taking the global
    batch (leaves `[global_batch, ...]`, split over `"data"`) and replicated state, rng and
    frozen inputs. A global batch that does not split evenly raises a `ValueError` at
    trace time (see `check_batch_divisible`).
  """
  num_devices = mesh.shape[DATA_AXIS]
  mapped = jax.shard_map(
    per_device_step,
    mesh=mesh,
    in_specs=(P(), P(DATA_AXIS), P(), P()),
    out_specs=(P(), P()),
    # ott's Sinkhorn loop carries values that vary over devices without annotations.
    check_vma=False,
  )

  def global_step(state, batch, rng, frozen=None):
    check_batch_divisible(batch, num_devices)
    return mapped(state, batch, rng, frozen)

  return jax.jit(global_step, donate_argnums=(0,) if donate_state else ())


def pmap_step(per_device_step: StepFn, *, donate_state: bool = True) -> StepFn:
  """Runs the same per-device step with `jax.pmap` over all local devices.

  Args:
    per_device_step: As for `data_parallel`.
    donate_state: Whether the input state's buffers are donated to the output.

  Returns:
    A pmapped `step(state, batch, rng, frozen) -> (state, metrics)`: `state` replicated
    with a leading device axis (`replicate`), `batch` leaves of shape
    `[devices, per_device_batch, ...]` (`split_batch`), `rng` and `frozen` broadcast
    unreplicated. Outputs carry the leading device axis (`unreplicate` to drop it).
  """
  return jax.pmap(
    per_device_step,
    axis_name=DATA_AXIS,
    in_axes=(0, 0, None, None),
    donate_argnums=(0,) if donate_state else (),
  )


def all_gather_batch(tree: PyTree, axis_name: str = DATA_AXIS) -> PyTree:
  """The global batch of per-device arrays, inside a mapped step.

  For losses that are statistics of the batch (CCC, similarity matrices, routing): computed
  identically on every device from the gathered arrays, their gradient is exact, since the
  all-gather's transpose sums the devices' parts and the step averages the gradients.

  Args:
    tree: Pytree of this device's arrays `[per_device_batch, ...]`.
    axis_name: The mapped device axis.

  Returns:
    The pytree with leaves `[global_batch, ...]`, devices in axis order.
  """
  return jax.lax.all_gather(tree, axis_name, axis=0, tiled=True)


def split_batch(batch: PyTree, num_devices: int) -> PyTree:
  """Reshapes a global batch to `[num_devices, global_batch // num_devices, ...]` for pmap.

  Raises:
    ValueError: If the global batch does not split evenly (see `check_batch_divisible`).
  """
  check_batch_divisible(batch, num_devices)
  return jax.tree.map(lambda x: np.reshape(x, (num_devices, -1, *np.shape(x)[1:])), batch)


def replicate(tree: PyTree) -> PyTree:
  """Stacks one copy of every leaf per local device, as `pmap_step` expects its state.

  The copies are made on the host, so no per-shape device op is compiled.

  Args:
    tree: Pytree of arrays (not typed PRNG keys).

  Returns:
    The pytree with leaves `[jax.local_device_count(), *leaf.shape]`, one slice per device.
  """
  devices = jax.local_devices()
  sharding = NamedSharding(jax.sharding.Mesh(np.array(devices), (DATA_AXIS,)), P(DATA_AXIS))

  def stack(x):
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x, (len(devices), *x.shape)), sharding)

  return jax.tree.map(stack, tree)


def unreplicate(tree: PyTree) -> PyTree:
  """Drops the leading device axis of `pmap_step`'s outputs, keeping device 0's copy."""
  return jax.tree.map(lambda x: x[0], tree)
