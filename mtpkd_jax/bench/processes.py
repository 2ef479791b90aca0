"""Measuring a function in a fresh process: its peak resident memory is that call's alone."""

from __future__ import annotations

import multiprocessing
import queue as queue_lib
import traceback
from pathlib import Path

# How often the parent, waiting for a result, checks that the child is still alive.
_POLL_S = 0.5


class _Failure:
  """What the child puts on the queue in place of a result when ``target`` raises."""

  def __init__(self, text: str):
    self.text = text


def peak_mib() -> float:
  """This process's peak resident memory, MiB.

  Linux's ``VmHWM``: reset by exec, unlike ``ru_maxrss``, which a spawned child inherits from
  its parent's size at fork.
  """
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) / 1024  # KiB.
  raise RuntimeError("No VmHWM in /proc/self/status (peak memory is measured on Linux).")


def _run(target, args, queue) -> None:
  """The child: ``target(*args, queue)``, its traceback put on ``queue`` if it raises."""
  try:
    target(*args, queue)
  except BaseException:
    queue.put(_Failure(traceback.format_exc()))
    raise


def in_fresh_process(target, *args) -> dict:
  """``target(*args, queue)`` in a spawned process; returns what it put on ``queue``.

  ``target`` must be a module-level function that puts one dict on the queue; it should
  import what it measures itself, so that the process starts bare.

  Raises:
    RuntimeError: naming ``target``, its exit code (negative: killed by that signal, -9 for
      the kernel's out-of-memory killer) and its exception's traceback where it raised one,
      as soon as the process has failed.
  """
  context = multiprocessing.get_context("spawn")
  queue = context.Queue()
  process = context.Process(target=_run, args=(target, args, queue))
  process.start()
  result = None
  while result is None:
    # Alive before the wait: if it had died by then, all it sent is already in the pipe.
    alive = process.is_alive()
    try:
      result = queue.get(timeout=_POLL_S)
    except queue_lib.Empty:
      if not alive:
        break  # Died without a result (killed by a signal): nothing more can arrive.
  process.join()
  if process.exitcode and not isinstance(result, _Failure):
    # A target that put its result and then raised: its traceback follows in the pipe.
    try:
      result = queue.get_nowait()
    except queue_lib.Empty:
      pass
  if process.exitcode or result is None or isinstance(result, _Failure):
    message = f"{target.__name__} failed in its process (exit code {process.exitcode})"
    if isinstance(result, _Failure):
      raise RuntimeError(f"{message}:\n{result.text}")
    if result is None:
      message += " without a result (a negative code: killed by that signal)"
    raise RuntimeError(message + ".")
  return result
