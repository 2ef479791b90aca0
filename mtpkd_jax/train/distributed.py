"""JAX's distributed runtime: starting it, and what a multi-process run does differently.

One process per host (TPU pod slice, GPU cluster) or several on one machine (CPU, loopback):
every process runs the same program over one `("data",)` mesh of all processes' devices
(`parallel.make_mesh`). Each process reads only its rows of every global batch
(`process_rows`); files are written by process 0 only (`is_main`), orbax checkpoints by
every process together.
"""

import os

import jax
from jax.experimental import multihost_utils

# Launchers whose environment JAX's own cluster detection reads (SLURM, Open MPI, TPU pods).
_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
_TPU_ENV = "TPU_WORKER_HOSTNAMES"


def _cluster_detected() -> bool:
  """Whether a multi-process launcher started this process (JAX then finds the rest)."""
  if any(int(os.environ.get(name, "1")) > 1 for name in _CLUSTER_ENV):
    return True
  return "," in os.environ.get(_TPU_ENV, "")


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  heartbeat_timeout_s: int = 100,
  shutdown_timeout_s: int = 300,
) -> int:
  """Starts `jax.distributed` when the run has several processes; returns their number.

  With any of the arguments, they are passed to `jax.distributed.initialize` (the others
  auto-detected). Without them, the runtime's own detection is used under a multi-process
  launcher (SLURM with several tasks, Open MPI, a multi-host TPU slice), and nothing is
  started otherwise: a single process.

  Args:
    coordinator_address: `host:port` of process 0's coordination service.
    num_processes: Number of processes of the run.
    process_id: This process's index in `[0, num_processes)`.
    heartbeat_timeout_s: A process not heard from for this long is declared dead and the
      others stop with an error (instead of waiting on it in a collective forever).
    shutdown_timeout_s: How long a finishing process waits for the others at exit.

  Returns:
    `jax.process_count()`.

  Raises:
    ValueError: On a `process_id` outside `[0, num_processes)`.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id={process_id} must be in [0, num_processes={num_processes}).")
  if any(v is not None for v in explicit) or _cluster_detected():
    jax.distributed.initialize(
      *explicit,
      heartbeat_timeout_seconds=heartbeat_timeout_s,
      shutdown_timeout_seconds=shutdown_timeout_s,
    )
  return jax.process_count()


def is_main() -> bool:
  """Whether this is process 0, the one that writes logs, tables and plots."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (nothing with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def process_rows(num_rows: int) -> slice:
  """This process's rows of a global batch of `num_rows` (process `p` holds block `p`).

  Raises:
    ValueError: If `num_rows` does not split evenly over the processes.
  """
  count, index = jax.process_count(), jax.process_index()
  if num_rows % count:
    raise ValueError(
      f"A global batch of {num_rows} rows does not split over {count} processes; use a "
      f"batch size that is a multiple of the number of devices."
    )
  share = num_rows // count
  return slice(index * share, (index + 1) * share)
