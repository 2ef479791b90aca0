"""Loading a build's units in worker processes, their examples delivered in unit order.

A build's units (a video with its signals, a recording, a trial) are independent, so
:func:`unit_results` loads them in ``num_workers`` processes, each worker taking the next
unit none has taken when it is done with one (a worker slowed down by another process on
its core takes fewer). Each worker hands its results over through a pipe (serialized
there, with ``encode``: the build's process only writes the records), at most
``queue_size`` ahead of the build, and the build reads unit ``0``'s, then unit ``1``'s,
...: the examples and the report arrive as one process would
produce them, whatever the number of workers, and memory holds at most ``queue_size + 1``
examples per worker, however many units or examples there are (a worker ahead of the build
waits). A worker that dies, even in the middle of handing over an example, stops the build
with an error that names its unit.

Worker ``w`` runs on the ``w``-th core this process may use (round robin), and FFmpeg decodes
in its thread alone there. The workers are started with ``forkserver``: a process that has
imported JAX (training starts builds) runs threads that ``fork`` would copy in an unknown
state. The forkserver starts once per process (imports included: about as long as the
process's own), its workers in a fraction of that. A worker builds its own list of units
with ``make_units`` (a picklable callable: the builder's scan, run once per worker), so
units need not be picklable, only their examples.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from mtpkd_jax.data.builders.report import BadFile, BuildReport

Unit = tuple[str, Callable[[BuildReport], Iterable[dict[str, Any]]]]
# How often the build, waiting for a worker, checks that the worker is still alive.
_POLL_S = 1.0
# A pipe holding a whole record (a BioVid example is 0.4 MB): written and read in one call
# each, not 64 KiB at a time with a switch between the processes after each.
_PIPE_BYTES = 1 << 20
# How often the build, waiting for a worker to take the next unit, looks again.
_TAKE_POLL_S = 0.001


def default_count() -> int:
  """The cores this process may run on (what ``taskset`` allows)."""
  return len(os.sched_getaffinity(0))


def check_count(num_workers: int | None) -> int:
  """``num_workers``, or the cores this process may run on when ``None``.

  Raises:
    ValueError: if ``num_workers`` is not a positive integer.
  """
  if num_workers is None:
    return default_count()
  if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
    raise ValueError(f"`num_workers` must be a positive integer or None, got {num_workers!r}.")
  return num_workers


def load_unit(
  name: str, load, dataset: str, encode: Callable[[dict[str, Any]], Any] | None = None
) -> Iterator[tuple[str, Any]]:
  """One unit's results: ``("example", example)`` for each, then ``("done", report)``.

  ``report`` is the unit's own :class:`BuildReport`: what ``load`` dropped, excluded or
  repaired, and the unit itself under ``skipped`` when ``load`` raised ``BadFile`` before
  its first example (a ``BadFile`` after it fails the build, as any other exception).
  ``encode``, where given, turns each example into what is handed over (its record).
  """
  report = BuildReport(dataset, 0.0)
  try:
    examples = iter(load(report))
    example = next(examples, None)
  except BadFile as error:
    report.skip(name, error)
    yield "done", report
    return
  # One example referenced at a time (none kept for the unit), so memory stays flat.
  while example is not None:
    yield "example", example if encode is None else encode(example)
    example = next(examples, None)
  yield "done", report


def unit_results(
  make_units: Callable[[], Sequence[Unit]],
  units: Sequence[Unit],
  dataset: str,
  num_workers: int,
  queue_size: int = 16,
  preload: Sequence[str] = (),
  encode: Callable[[dict[str, Any]], Any] | None = None,
) -> Iterator[tuple[str, Any]]:
  """The results of :func:`load_unit` for every unit, in unit order.

  Args:
    make_units: a picklable callable returning the units, the same as ``units`` (a worker's
      own copy).
    units: the units, ``(name, load)``.
    dataset: ``<builder>/<config>``, for the units' reports.
    num_workers: processes loading units; ``1`` loads them in this process.
    queue_size: results a worker may hand over ahead of the build.
    preload: modules the forkserver imports when it starts (the first build of a process
      that uses workers), so that its workers start with them imported.
    encode: a picklable callable turning an example into what the build receives (its
      serialized record: a worker's work, not the build's), or ``None`` for the examples.

  Returns:
    An iterator of ``("example", example)`` and ``("done", unit report)`` pairs.

  Raises:
    Whatever a unit's loading raised (``BadFile`` after a first example, a bug), or
    RuntimeError when a worker died without one (e.g. killed for memory).
  """
  num_workers = min(num_workers, len(units))
  if num_workers <= 1:
    for name, load in units:
      yield from load_unit(name, load, dataset, encode)
    return
  context = multiprocessing.get_context("forkserver")
  context.set_forkserver_preload(list(preload))
  # One one-way pipe a worker, whose write end only the worker holds: when it dies, even in
  # the middle of an example, the build reads the end of the pipe instead of waiting. A
  # worker takes one of its `queue_size` slots before it sends, the build frees it after
  # reading.
  pipes = [context.Pipe(duplex=False) for _ in range(num_workers)]
  for receiver, _ in pipes:
    _widen(receiver)
  slots = [context.Semaphore(queue_size) for _ in range(num_workers)]
  # The next unit no worker has taken, and the worker that took each (-1: none yet).
  taken = context.Value("q", 0)
  owners = context.Array("i", [-1] * len(units), lock=False)
  cores = sorted(os.sched_getaffinity(0))
  workers = [
    context.Process(
      target=_work,
      args=(make_units, len(units), dataset, pipes[w][1]),
      kwargs={
        "number": w,
        "taken": taken,
        "owners": owners,
        "slots": slots[w],
        "core": cores[w % len(cores)],
        "encode": encode,
      },
      daemon=True,
    )
    for w in range(num_workers)
  ]
  try:
    for worker, (_, sender) in zip(workers, pipes, strict=True):
      worker.start()
      sender.close()
    for number, (name, _) in enumerate(units):
      w = _owner(owners, number, workers, pipes, slots, name)
      kind = None
      while kind != "done":
        kind, value = _next(pipes[w][0], slots[w], workers[w], name)
        yield kind, value
    # Anything left is the error of a worker that took no unit (its scan failed).
    for worker, (receiver, _) in zip(workers, pipes, strict=True):
      worker.join()
      if receiver.poll(0):
        try:
          _raise_error(*receiver.recv())
        except EOFError:  # The pipe's end: nothing was left.
          pass
  finally:
    for worker in workers:
      if worker.is_alive():
        worker.terminate()
      worker.join()
    for receiver, _ in pipes:
      receiver.close()


def _owner(owners, number: int, workers, pipes, slots, name: str) -> int:
  """The worker that took unit ``number``, once one has; raises what stopped them all."""
  while (w := owners[number]) < 0:
    if not any(worker.is_alive() for worker in workers):
      # None took it: what the workers left in their pipes is what stopped them.
      for worker, (receiver, _), slot in zip(workers, pipes, slots, strict=True):
        if receiver.poll(0):
          _next(receiver, slot, worker, name)
      raise RuntimeError(f"The build's workers all ended before one took {name!r}.")
    time.sleep(_TAKE_POLL_S)
  return w


def _widen(connection) -> None:
  """Lets the pipe of ``connection`` hold a whole example (Linux: up to ``pipe-max-size``)."""
  try:
    fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
  except (AttributeError, OSError):  # Not Linux, or a lower limit: the default size works.
    pass


def _next(receiver, slots, worker, name: str) -> tuple[str, Any]:
  """The worker's next result for the unit ``name``; raises what the worker raised."""
  while not receiver.poll(_POLL_S):
    if not worker.is_alive() and not receiver.poll(0):
      break
  try:
    kind, value = receiver.recv()
  except (EOFError, OSError):  # The pipe's end, before or in the middle of a result.
    worker.join()
    raise RuntimeError(
      f"The build's worker loading {name!r} died (exit code {worker.exitcode}; negative: "
      "killed by that signal, -9 often for memory) without a result."
    ) from None
  slots.release()
  _raise_error(kind, value)
  return kind, value


def _raise_error(kind: str, value: Any) -> None:
  """Raises the error a worker sent (``kind`` ``"error"``)."""
  if kind == "error":
    error, text = value
    raise error from RuntimeError(f"In the build's worker:\n{text}")


def _work(
  make_units,
  count: int,
  dataset: str,
  sender,
  *,
  number: int,
  taken,
  owners,
  slots,
  core: int,
  encode,
) -> None:
  """Worker ``number``: the results of the units it takes, or the error that stopped it.

  It takes the next unit no worker has taken (``taken``), says so in ``owners`` and sends
  the unit's results, until none is left: a worker slowed down (by another process on its
  core) takes fewer units, instead of holding back the build, which reads the units in
  order. It runs on one ``core``: a decode that moved between cores ran up to 1.5x the CPU
  time of one that stayed, on the 2-core VM of ``docs/data_performance.md``.
  """
  # Sent by a thread of its own: the worker loads on while a send waits for the build.
  outbox: queue.SimpleQueue = queue.SimpleQueue()
  mailer = threading.Thread(target=_mail, args=(outbox, sender), daemon=True)
  mailer.start()
  try:
    os.sched_setaffinity(0, {core})
    units = make_units()
    if len(units) != count:
      raise RuntimeError(f"A worker's scan found {len(units)} units, the build's {count}.")
    while True:
      with taken.get_lock():
        unit = taken.value
        if unit == count:
          return
        taken.value = unit + 1
        owners[unit] = number
      for result in load_unit(*units[unit], dataset, encode):
        slots.acquire()
        outbox.put(result)
  except BaseException as error:  # Handed to the build, which raises it.
    slots.acquire()
    outbox.put(("error", (_picklable(error), "".join(traceback.format_exception(error)))))
  finally:
    outbox.put(None)
    mailer.join()


def _mail(outbox, sender) -> None:
  """Sends what is put in ``outbox`` until ``None``; ends the worker if the build is gone."""
  try:
    while (result := outbox.get()) is not None:
      sender.send(result)
  except BaseException:  # noqa: BLE001  (a broken pipe: no build to hand anything to)
    os._exit(1)


def _picklable(error: BaseException) -> BaseException:
  """``error`` if it pickles, else a RuntimeError with its type and message."""
  try:
    pickle.loads(pickle.dumps(error))
    return error
  except Exception:  # noqa: BLE001  (any failure to pickle)
    return RuntimeError(f"{type(error).__name__}: {error}")
