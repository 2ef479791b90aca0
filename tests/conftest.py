"""Test-wide setup: eight fake CPU devices, so parallel code is tested without accelerators."""

import os
import tempfile
from pathlib import Path

import pytest

# Must be set before JAX is imported (it reads the cache settings then) and initialises its
# backends.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The stages of the many smoke runs (in this process, in xdist's other worker and in the CLI
# subprocesses, which inherit the environment) compile the same programs: keep them on disk,
# the small ones too (each subprocess compiles hundreds of ~25 ms op-by-op programs).
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "mtpkd_jax_tests_jax_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from tests import cpu_env  # noqa: E402  (imports JAX)


@pytest.fixture(autouse=True)
def _compile_mode(request):
  """Tests marked ``fast_compile`` compile fast (``tests/cpu_env.py``), the others at the defaults.

  Runs after the session and module fixtures, which choose their own mode.
  """
  cpu_env.set_fast_compile(request.node.get_closest_marker("fast_compile") is not None)


# `--dist loadfile` hands whole files to the workers in collection order (`--no-loadscope-reorder`
# in pyproject.toml: xdist would order them by their number of tests, and start these slow files,
# which have few tests, last). The slowest start first, so that the workers finish together.
# Their cold times on 2 cores, in seconds (`pytest -n 2 --dist loadfile --durations=0`).
SLOWEST_FILES = (
  "methods/stages_test.py",  # 211
  "methods/distill_alone_test.py",  # 150 on a loaded machine (72 s of CPU)
  "experiments/features_test.py",  # 153
  "experiments/train_test.py",  # 114
  "methods/cmkt_test.py",  # 66
  "experiments/datasets_test.py",  # 60
  "experiments/budgets_test.py",  # 56
  "methods/finetune_test.py",  # 59
  "bench/train_step_test.py",  # 47
  "ot/loss_test.py",  # 46
  "models/dropout_test.py",  # 43
  "models/sequence_test.py",  # 41
  "train/multihost_test.py",  # 38
  "ot/sinkhorn_test.py",  # 34
  "bench/input_speed_test.py",  # 34
  "ot/divergence_test.py",  # 30
  "experiments/bench_ot_test.py",  # 28
  "docs_test.py",  # 25
  "models/fusion_test.py",  # 22
  "experiments/train_multihost_test.py",  # 21
)


def pytest_collection_modifyitems(items):
  """Runs :data:`SLOWEST_FILES` first, in that order; the other files after, in their order."""
  tests = Path(__file__).parent
  if missing := [name for name in SLOWEST_FILES if not (tests / name).is_file()]:
    raise pytest.UsageError(f"tests/conftest.py: SLOWEST_FILES names missing files {missing}.")
  rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))
