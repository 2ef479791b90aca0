"""The environment of the tests' JAX subprocesses."""

import os
import re

# The subprocesses run whole training jobs whose time goes mostly to compiling their steps:
# without LLVM's optimisations XLA compiles them about 40 % faster (the 1-vs-4-device main
# job test: 72 s instead of 116 s on a cold cache). Their results are compared with each
# other, or with tolerances far above the ~1e-7 this moves; the numerical tests run in the
# test process, at XLA's default level, as users do.
FAST_COMPILE = "--xla_backend_optimization_level=0"


def cpu_env(devices: int = 1, **extra: str) -> dict[str, str]:
  """``os.environ`` with JAX on ``devices`` fake CPU devices, plus ``extra``.

  The other XLA flags of the test process (``tests/conftest.py``) are kept.
  """
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ["XLA_FLAGS"])
  flags = f"{flags} {FAST_COMPILE} --xla_force_host_platform_device_count={devices}".strip()
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, **extra}
