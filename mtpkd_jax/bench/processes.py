"""Peak memory: of a call in a fresh process (that call's alone), of a process and its children."""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_lib
import threading
import traceback
from pathlib import Path

# How often the parent, waiting for a result, checks that the child is still alive.
_POLL_S = 0.5
# How often :class:`TreePeak` samples the memory of a process and its children.
_SAMPLE_S = 0.05


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


def tree_rss_mib(root: int) -> float:
  """The resident memory of process ``root`` and all its descendants, summed (Linux)."""
  pages = 0
  for pid in tree(root):
    try:
      pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
      continue
  return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s(pid: int) -> float | None:
  """The CPU time (user and system) process ``pid`` has used, s; ``None`` once it is gone."""
  try:
    # Fields after the command name, which may hold spaces: state (3), ..., utime (14), stime.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  except (OSError, IndexError, ValueError):
    return None


def tree(root: int) -> set[int]:
  """Process ``root`` and all its descendants (Linux)."""
  parents = {}
  for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
      try:
        # Fields after the command name, which may hold spaces: state, ppid, ...
        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
      except (OSError, IndexError, ValueError):
        continue
  found, added = {root}, True
  while added:
    new = {pid for pid, parent in parents.items() if parent in found} - found
    found |= new
    added = bool(new)
  return found


class TreePeak:
  """The peak of :func:`tree_rss_mib` of this process while inside ``with``, and CPU, sampled.

  Attributes:
    mib: the peak so far, MiB.
  """

  def __init__(self, every_s: float = _SAMPLE_S):
    self.mib, self._every_s, self._done = 0.0, every_s, threading.Event()
    self._sampler = threading.Thread(target=self._sample, daemon=True)
    # CPU seconds of each process of the tree when first and last seen.
    self._first: dict[int, float] = {}
    self._last: dict[int, float] = {}

  @property
  def cpu_s(self) -> float:
    """The CPU time the tree's processes used inside ``with``, s.

    The last ``every_s`` of a process that ended inside ``with`` may be missed.
    """
    return sum(self._last[pid] - self._first[pid] for pid in self._last)

  def _sample_once(self, before: bool = False) -> None:
    for pid in tree(os.getpid()):
      if (used := cpu_s(pid)) is not None:
        self._last[pid] = used
        # A process started inside `with` started from nothing.
        self._first.setdefault(pid, used if before else 0.0)
    self.mib = max(self.mib, tree_rss_mib(os.getpid()))

  def _sample(self) -> None:
    while not self._done.wait(self._every_s):
      self._sample_once()

  def __enter__(self) -> TreePeak:
    self._sample_once(before=True)
    self._sampler.start()
    return self

  def __exit__(self, *exc) -> None:
    self._done.set()
    self._sampler.join()
    self._sample_once()


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
