"""Measuring a function in a fresh process: its peak resident memory is that call's alone."""

from __future__ import annotations

import multiprocessing
from pathlib import Path


def peak_mib() -> float:
  """This process's peak resident memory (Linux ``VmHWM``: reset by exec, unlike ``ru_maxrss``,
  which a spawned child inherits from its parent's size at fork)."""
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) / 1024  # KiB.
  raise RuntimeError("No VmHWM in /proc/self/status (peak memory is measured on Linux).")


def in_fresh_process(target, *args) -> dict:
  """``target(*args, queue)`` in a spawned process; returns what it put on ``queue``.

  ``target`` must be a module-level function that puts one dict on the queue; it should
  import what it measures itself, so that the process starts bare.

  Raises:
    RuntimeError: naming ``target``, if the process failed.
  """
  context = multiprocessing.get_context("spawn")
  queue = context.Queue()
  process = context.Process(target=target, args=(*args, queue))
  process.start()
  result = queue.get()
  process.join()
  if process.exitcode:
    raise RuntimeError(f"{target.__name__} failed with exit code {process.exitcode}.")
  return result
