"""Sphinx configuration of the API reference, built from the package's docstrings.

  sphinx-build -W --keep-going -b html docs/api /tmp/mtpkd_jax_api

Offline (no intersphinx): references to other libraries are not checked, references into
``mtpkd_jax`` are (``nitpicky``). A public function, class or method without a docstring is
an error (``_warn_undocumented``), as is anything else Sphinx warns about under ``-W``.
"""

import importlib
import inspect
import pkgutil

from sphinx.util import logging

import mtpkd_jax

project = "mtpkd_jax"
release = mtpkd_jax.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon"]
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []

# The package's docstrings write code in single backquotes.
default_role = "literal"
autosummary_generate = True
autosummary_ignore_module_all = False  # A package's page lists its `__all__`.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# An `Attributes:` section as fields of the class, not `.. attribute::` entries that autodoc's
# members would duplicate.
napoleon_use_ivar = True

# References into mtpkd_jax must resolve; other libraries' (type hints, jnp, flax) are not
# looked up offline.
nitpicky = True
nitpick_ignore_regex = [
  (r"py:.*", r"(?!mtpkd_jax\.).*"),
  (r"py:class", r"mtpkd_jax\..*\._\w+"),  # Private bases, shown by `show-inheritance`.
  (r"py:class", r"mtpkd_jax\.data\.builders\.base\.ConfigT"),  # A TypeVar.
]

_logger = logging.getLogger(__name__)


def _exports() -> dict[str, list[str]]:
  """Each package's re-exported names -> the path where each is documented."""
  out = {}
  for info in pkgutil.walk_packages(mtpkd_jax.__path__, "mtpkd_jax."):
    if not info.ispkg:
      continue
    package = importlib.import_module(info.name)
    # Relative to the package: autosummary refuses the package's own prefix.
    out[info.name] = [
      f"{getattr(package, name).__module__.removeprefix(info.name + '.')}.{name}"
      for name in getattr(package, "__all__", ())
      if hasattr(getattr(package, name), "__module__")
      and getattr(package, name).__module__.startswith("mtpkd_jax.")
    ]
  out["mtpkd_jax"] = []
  return out


autosummary_context = {"exports": _exports()}


def _warn_undocumented(app, what, name, obj, skip, options):
  """Warns of a public function, class or method of the package without a docstring."""
  del app, options
  public = not name.startswith("_") or name == "__call__"
  code = inspect.isfunction(obj) or inspect.isclass(obj) or isinstance(obj, property)
  module = getattr(obj.fget if isinstance(obj, property) else obj, "__module__", None) or ""
  if public and code and module.startswith("mtpkd_jax") and not inspect.getdoc(obj):
    _logger.warning(f"{module}: public {what} member {name!r} has no docstring.")
  return skip


def _resolve_reexport(app, env, node, contnode):
  """Resolves a reference to a re-exported name (``mtpkd_jax.ot.Fixed``) where it is defined."""
  target = node.get("reftarget", "")
  if node.get("refdomain") != "py" or not target.startswith("mtpkd_jax."):
    return None
  module_name, _, name = target.rpartition(".")
  try:
    obj = getattr(importlib.import_module(module_name), name)
  except (ImportError, AttributeError):
    return None
  canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
  if canonical == target:
    return None
  return env.domains["py"].resolve_xref(
    env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
  )


def setup(app):
  """Connects the docstring check and the re-exported names' references."""
  app.connect("autodoc-skip-member", _warn_undocumented)
  app.connect("missing-reference", _resolve_reexport)
