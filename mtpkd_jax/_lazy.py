"""Lazy re-exports: a package's public names, imported from their modules on first use.

A package whose modules import heavy libraries (TFDS, grain, orbax) re-exports their names
this way, so that importing one light module of it (``mtpkd_jax.data.schema``), or the
package itself, costs no more than before.
"""

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence


def attach(
  package: str,
  exports: Mapping[str, Sequence[str]] | None = None,
  submodules: Iterable[str] = (),
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
  """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for a package's ``__init__``.

  Args:
    package: the package's ``__name__``.
    exports: a module of the package (its name relative to the package) -> the names it
      defines that the package re-exports.
    submodules: modules of the package exported as themselves (``mtpkd_jax.ot`` after
      ``import mtpkd_jax``).

  Returns:
    ``(__getattr__, __dir__, __all__)``: a name is imported from its module when first read
    and then kept in the package; ``__all__`` lists the names and submodules, sorted.

  Raises:
    ValueError: if two modules export the same name, or a name is also a module's (the
      package's attribute would hide the module).
  """
  exports = exports or {}
  where = dict.fromkeys(submodules)
  for module, names in exports.items():
    for name in names:
      if name in where or name in exports:
        raise ValueError(f"{package}: {name!r} is exported twice, or is a module's name.")
      where[name] = module
  names = sorted(where)

  def __getattr__(name: str) -> object:
    if name not in where:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    if where[name] is None:
      value = importlib.import_module(f"{package}.{name}")
    else:
      value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
    setattr(importlib.import_module(package), name, value)
    return value

  def __dir__() -> list[str]:
    return sorted(set(vars(importlib.import_module(package))) | set(names))

  return __getattr__, __dir__, names
