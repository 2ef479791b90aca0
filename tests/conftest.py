"""Test-wide setup: eight fake CPU devices, so parallel code is tested without accelerators."""

import os

# Must be set before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
