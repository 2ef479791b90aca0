"""How the tests compile: fast for training flows, in the test process and in subprocesses."""

import os
import re

import jax

# Training flows (whole smoke jobs, stages, steps on 1 and 4 devices) spend most of their time
# compiling. Without most of XLA's optimisations their programs compile 30-50 % faster (the
# 1-vs-4-device main job test: 74 s instead of 116 s on a cold cache; the methods' fixtures and
# dropout tests: half the time) and move results by ~1e-7. So the tests that compare training
# runs with each other use this; the numerical tests, which compare with independent references,
# run at XLA's defaults, as users do.
DISABLE_MOST_OPTIMIZATIONS = "JAX_DISABLE_MOST_OPTIMIZATIONS"


def cpu_env(devices: int = 1, **extra: str) -> dict[str, str]:
  """``os.environ`` for a training subprocess: ``devices`` fake CPU devices, fast compiles.

  The other XLA flags of the test process (``tests/conftest.py``) are kept; ``extra`` is added.
  """
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ["XLA_FLAGS"])
  flags = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, DISABLE_MOST_OPTIMIZATIONS: "1"}
  return {**os.environ, **env, **extra}


def set_fast_compile(on: bool) -> None:
  """Whether the test process compiles its next programs without most of XLA's optimisations.

  For the tests marked ``fast_compile`` and the shared fixtures that train. Switching back
  clears JAX's in-memory caches, so that no program compiled fast is reused by a test that runs
  at the defaults (the disk cache tells them apart by their compile options).
  """
  if on == jax.config.read("jax_disable_most_optimizations"):
    return
  if not on:
    jax.clear_caches()
  jax.config.update("jax_disable_most_optimizations", on)
