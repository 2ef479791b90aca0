"""Two local processes on jax.distributed (CPU, loopback, 2 fake devices each).

They train like one process with 4 devices, count every validation example once, fail fast
when one of them is SIGKILLed, and one process resumes their checkpoint.
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cpu_env import cpu_env

pytestmark = pytest.mark.slow  # Trains on two processes.

SCRIPT = Path(__file__).parent / "multihost_worker.py"
REPO_ROOT = Path(__file__).parents[2]
# The survivor must stop within this long of its peer's death (heartbeat timeout: 5 s).
FAIL_WITHIN_S = 30


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir, result, *flags, devices, log):
  env = cpu_env(
    devices,
    PYTHONPATH=str(REPO_ROOT),
    JAX_COMPILATION_CACHE_DIR=str(Path(log.name).parent / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  return subprocess.Popen(
    [sys.executable, str(SCRIPT), str(workdir), str(result), *flags],
    cwd=REPO_ROOT,
    env=env,
    stdout=log,
    stderr=subprocess.STDOUT,
  )


def _launch_two(workdir, result, *flags, log):
  coordinator = f"--coordinator=localhost:{_free_port()}"
  return [
    _launch(
      workdir,
      result,
      coordinator,
      "--num_processes=2",
      f"--process_id={i}",
      *flags,
      devices=2,
      log=log,
    )
    for i in range(2)
  ]


@pytest.fixture
def processes():
  """Processes the test starts; those still running at its end (a failure) are killed."""
  started = []
  yield started
  for process in started:
    if process.poll() is None:
      process.kill()
      process.wait()


def _finished_steps(directory):
  return [int(p.name) for p in directory.glob("*") if p.name.isdigit()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One process with 4 devices: the run the others must reproduce."""
  tmp = tmp_path_factory.mktemp("reference")
  with (tmp / "log.txt").open("w") as log:
    process = _launch(tmp / "workdir", tmp / "result.json", devices=4, log=log)
    assert process.wait(timeout=120) == 0, (tmp / "log.txt").read_text()
  return json.loads((tmp / "result.json").read_text())


def _assert_same_run(result, expected):
  assert result["best"]["step"] == expected["best"]["step"]
  np.testing.assert_allclose(result["best"]["value"], expected["best"]["value"], rtol=1e-5)
  np.testing.assert_allclose(result["final"], expected["final"], rtol=1e-5, atol=1e-6)


def test_two_processes_train_as_one_with_four_devices_and_count_each_example_once(
  tmp_path, reference, processes
):
  with (tmp_path / "log.txt").open("w") as log:
    processes += _launch_two(tmp_path / "workdir", tmp_path / "result.json", log=log)
    assert [p.wait(timeout=120) for p in processes] == [0, 0], (tmp_path / "log.txt").read_text()
  result = json.loads((tmp_path / "result.json").read_text())
  assert (result["processes"], result["devices"]) == (2, 4)
  assert (reference["processes"], reference["devices"]) == (1, 4)
  _assert_same_run(result, reference)
  # 13 validation examples over 4 devices: evaluation pads, and the padding is never counted.
  assert result["seen"] == reference["seen"] == list(range(13))


def test_a_killed_process_stops_its_peer_and_one_process_resumes_their_checkpoint(
  tmp_path, reference, processes
):
  workdir, log_path = tmp_path / "workdir", tmp_path / "log.txt"
  checkpoints = workdir / "toy" / "checkpoints"
  with log_path.open("w") as log:
    processes += _launch_two(workdir, tmp_path / "result.json", "--slow", log=log)
    survivor, victim = processes
    deadline = time.monotonic() + 120
    while max(_finished_steps(checkpoints), default=0) < 4:
      assert victim.poll() is None and survivor.poll() is None, log_path.read_text()
      assert time.monotonic() < deadline, "no checkpoint appeared"
      time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert victim.wait() == -signal.SIGKILL
    # The survivor fails with an error instead of waiting on its dead peer.
    assert survivor.wait(timeout=FAIL_WITHIN_S) != 0
    assert time.monotonic() - killed_at < FAIL_WITHIN_S
    text = log_path.read_text()
    # Which of JAX's errors comes first depends on timing: the lost connection, the
    # coordination service's crash report, or the heartbeat.
    reasons = ("heartbeat timeout", "Connection reset by peer", "tasks have crashed")
    assert any(reason in text for reason in reasons), text
    assert not (tmp_path / "result.json").exists()
    assert max(_finished_steps(checkpoints)) < 16
    assert _finished_steps(workdir / "toy" / "output") == []

    # One process with 2 devices continues the two processes' checkpoint.
    resumed = _launch(workdir, tmp_path / "result.json", devices=2, log=log)
    processes.append(resumed)
    assert resumed.wait(timeout=120) == 0, log_path.read_text()
  result = json.loads((tmp_path / "result.json").read_text())
  assert (result["processes"], result["devices"]) == (1, 2)
  assert 4 <= result["start_step"] < 16
  _assert_same_run(result, reference)
