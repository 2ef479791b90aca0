"""What a comparison ran on: processor, XLA flags and package versions.

Training is deterministic on one machine, but XLA compiles for the processor it runs on, so
the same code and seed give other models on another processor
(``docs/results/synthetic_mtpkdot.md``). A comparison's ``results.json`` records this, so that
two results can be told apart.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

# The packages whose versions can change a trained model.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "ott-jax", "numpy")


def processor(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
  """The CPU's model name (Linux's ``cpuinfo``), else what :mod:`platform` knows of it."""
  try:
    for line in Path(cpuinfo).read_text().splitlines():
      key, _, value = line.partition(":")
      if key.strip() == "model name":
        return value.strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def environment() -> dict[str, object]:
  """``processor``, ``xla_flags``, ``python`` and ``packages`` (name -> version, or None)."""
  packages = {}
  for name in PACKAGES:
    try:
      packages[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      packages[name] = None
  return {
    "processor": processor(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "python": platform.python_version(),
    "packages": packages,
  }
