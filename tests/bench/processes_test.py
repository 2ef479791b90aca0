"""A function in a fresh process: its result, and a prompt error when the process fails."""

import os
import re
import signal
import threading

import pytest

from mtpkd_jax.bench import processes


# Module-level targets: a spawned process imports them by name.
def _returns(value, queue):
  queue.put({"value": value, "pid": os.getpid()})


def _raises(queue):
  raise ValueError("no such dataset")


def _killed(queue):
  os.kill(os.getpid(), signal.SIGKILL)  # What the kernel's out-of-memory killer sends.


def _silent(queue):
  pass


def test_returns_what_the_target_put_from_another_process():
  result = processes.in_fresh_process(_returns, 3)
  assert result["value"] == 3 and result["pid"] != os.getpid()


@pytest.mark.parametrize(
  "target, match",
  [
    (_raises, r"_raises failed in its process \(exit code 1\):\n.*ValueError: no such dataset"),
    (_killed, r"_killed failed in its process \(exit code -9\) without a result"),
    (_silent, r"_silent failed in its process \(exit code 0\) without a result"),
  ],
)
def test_a_failed_process_raises_promptly(target, match):
  # In a thread, so that a wait that never ends fails the test instead of hanging it.
  raised = []

  def call():
    try:
      processes.in_fresh_process(target)
    except RuntimeError as error:
      raised.append(error)

  thread = threading.Thread(target=call, daemon=True)
  thread.start()
  thread.join(timeout=60)  # A spawned interpreter starts in about a second.
  assert not thread.is_alive(), f"in_fresh_process({target.__name__}) still waits after 60 s."
  (error,) = raised
  assert re.search(match, str(error), re.DOTALL)


def test_peak_mib_is_this_process_resident_peak():
  assert 1 < processes.peak_mib() < 1e6
