"""Test-wide setup: eight fake CPU devices, so parallel code is tested without accelerators."""

import os
import tempfile

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
