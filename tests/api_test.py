"""The public API: what each package re-exports, and what importing it costs."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import mtpkd_jax

PACKAGES = sorted(
  info.name for info in pkgutil.walk_packages(mtpkd_jax.__path__, "mtpkd_jax.") if info.ispkg
)


@pytest.mark.parametrize("name", ["mtpkd_jax", *PACKAGES])
def test_every_exported_name_resolves_and_keeps_the_modules(name):
  package = importlib.import_module(name)
  exported = getattr(package, "__all__", [])
  assert exported == sorted(set(exported)), f"{name}.__all__ is not sorted and unique"
  submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
  for attribute in exported:
    value = getattr(package, attribute)
    # A package attribute named like one of its modules would hide the module.
    assert attribute not in submodules or value is sys.modules[f"{name}.{attribute}"]
  assert set(exported) <= set(dir(package))
  with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
    package.no_such_name  # noqa: B018


def test_main_names_at_the_package_level():
  from mtpkd_jax.data.schema import Schema
  from mtpkd_jax.ot.loss import structural_ot_loss
  from mtpkd_jax.train.state import TrainState

  assert mtpkd_jax.ot.structural_ot_loss is structural_ot_loss
  assert mtpkd_jax.data.Schema is Schema
  assert mtpkd_jax.train.TrainState is TrainState


def test_importing_the_package_imports_no_subpackage_and_light_modules_stay_light():
  code = (
    "import sys, mtpkd_jax; print(sorted(m for m in sys.modules if m.startswith('mtpkd_jax.')"
    " or m.split('.')[0] in ('jax', 'flax', 'torch', 'matplotlib')));"
    "import mtpkd_jax.data.schema, mtpkd_jax.train.parallel;"
    "print(sorted(m for m in ('tensorflow_datasets', 'grain', 'orbax', 'torch', 'matplotlib')"
    " if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split("\n")[:2] == ["['mtpkd_jax._lazy']", "[]"]
