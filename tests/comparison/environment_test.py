"""What a comparison records of the machine it ran on."""

import platform

import flax
import jax
import jaxlib
import numpy as np
import optax

from mtpkd_jax.comparison import environment


def test_the_processor_is_the_model_name_of_cpuinfo_or_what_platform_knows(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nvendor_id\t: Fake\nmodel name\t: Fake CPU @ 2.00GHz\n")
  assert environment.processor(cpuinfo) == "Fake CPU @ 2.00GHz"
  fallback = platform.processor() or platform.machine()
  assert environment.processor(tmp_path / "missing") == fallback != ""


def test_the_environment_holds_the_package_versions_and_xla_flags(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
  env = environment.environment()
  assert env["xla_flags"] == "--xla_cpu_max_isa=AVX2"
  assert env["python"] == platform.python_version()
  packages = env["packages"]
  want = {"jax": jax, "jaxlib": jaxlib, "flax": flax, "optax": optax, "numpy": np}
  assert {name: packages[name] for name in want} == {k: m.__version__ for k, m in want.items()}
