"""The environment of the tests' JAX subprocesses."""

import os
import re


def cpu_env(devices: int = 1, **extra: str) -> dict[str, str]:
  """``os.environ`` with JAX on ``devices`` fake CPU devices, plus ``extra``.

  The other XLA flags of the test process (``tests/conftest.py``) are kept.
  """
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ["XLA_FLAGS"])
  flags = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, **extra}
