"""The package's imports follow the layers of ``docs/design.md``: downward only, no cycle.

Every module of ``mtpkd_jax/`` is parsed with ``ast`` (nothing is imported), with the imports
inside functions and under ``if TYPE_CHECKING:`` (a cycle through either is still a cycle),
``importlib.import_module`` calls on a constant name, and the lazy re-export tables of
``_lazy.attach`` (a package's ``__init__`` imports the modules they name). An import names the
most specific module it reaches: ``from mtpkd_jax.data import pipeline`` the submodule
``mtpkd_jax.data.pipeline``, ``from mtpkd_jax.data import Schema`` the package
``mtpkd_jax.data`` (its ``__init__``); the parent packages that Python initialises on the way
are left out, so that a package's ``__init__`` importing its submodules is no cycle with a
submodule importing a sibling.

Two modules are special: ``mtpkd_jax`` (the top-level ``__init__``) re-exports the
subpackages, above every layer, and nothing of the package imports it; ``mtpkd_jax._lazy``
(the lazy re-export helper) imports nothing of the package, below every layer, and every
package may import it.
"""

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "mtpkd_jax"
ROOT = Path(__file__).resolve().parents[1]
TOP, BASE = PACKAGE, f"{PACKAGE}._lazy"
# docs/design.md's layers: a module imports from its own layer's package or a lower layer.
LAYERS = {
  "data": 0,
  "models": 0,
  "ot": 0,
  "losses": 0,
  "train": 1,
  "methods": 2,
  "comparison": 3,
  "bench": 4,
}
# Imports between two packages of one layer that design.md allows: none (the four packages
# of the bottom layer import nothing else of the package but `_lazy`).
SAME_LAYER = frozenset()


@dataclasses.dataclass(frozen=True)
class Import:
  """One import of ``target`` by ``source``, at ``path:lineno``."""

  source: str
  target: str
  path: str
  lineno: int

  def __str__(self) -> str:
    return f"{self.path}:{self.lineno}: {self.source} imports {self.target}"


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
  """Module name -> file, every ``.py`` file of ``package`` (a package by its ``__init__``)."""
  found = {}
  for path in sorted((root / package).rglob("*.py")):
    parts = path.relative_to(root).with_suffix("").parts
    found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return found


def _resolve(name: str, known: dict[str, Path]) -> str:
  """The longest prefix of the dotted ``name`` that is a module of the package, or ``name``."""
  parts = name.split(".")
  for end in range(len(parts), 0, -1):
    if ".".join(parts[:end]) in known:
      return ".".join(parts[:end])
  return name


def _lazy_tables(call: ast.Call) -> Iterator[ast.expr]:
  """The constant module names of an ``_lazy.attach(__name__, exports, submodules)`` call."""
  arguments = dict(zip(("package", "exports", "submodules"), call.args, strict=False))
  arguments |= {k.arg: k.value for k in call.keywords}
  if isinstance(exports := arguments.get("exports"), ast.Dict):
    yield from exports.keys
  if isinstance(submodules := arguments.get("submodules"), ast.Tuple | ast.List):
    yield from submodules.elts


def _is_call_to(node: ast.AST, name: str) -> bool:
  if not isinstance(node, ast.Call):
    return False
  func = node.func
  return (isinstance(func, ast.Name) and func.id == name) or (
    isinstance(func, ast.Attribute) and func.attr == name
  )


def imports(root: Path = ROOT, package: str = PACKAGE) -> list[Import]:
  """Every import of every module of ``package`` under ``root``, resolved to a module name.

  Names outside the package (``numpy``, ``experiments.configs``) are kept as written.
  """
  known = modules(root, package)
  found = []
  for source, path in known.items():
    is_package = path.name == "__init__.py"
    where = str(path.relative_to(root))
    tree = ast.parse(path.read_text(), filename=where)

    def add(target: str, node: ast.AST, source=source, where=where) -> None:
      found.append(Import(source, _resolve(target, known), where, node.lineno))

    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        for alias in node.names:
          add(alias.name, node)
      elif isinstance(node, ast.ImportFrom):
        if node.level:
          # Relative to the module's package (an `__init__` is its own package).
          parts = source.split(".")[: len(source.split(".")) + is_package - node.level]
          base = ".".join(parts + ([node.module] if node.module else []))
        else:
          base = node.module
        for alias in node.names:
          # `from pkg import submodule` imports the submodule; `from pkg import name`, pkg.
          full = f"{base}.{alias.name}"
          add(full if full in known else base, node)
      elif _is_call_to(node, "import_module") and node.args:
        name = node.args[0]
        if isinstance(name, ast.JoinedStr) and name.values:
          name = name.values[0]  # The constant start of an f-string: its package.
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
          add(name.value.rstrip("."), node)
      elif _is_call_to(node, "attach") and is_package:
        for key in _lazy_tables(node):
          if isinstance(key, ast.Constant) and isinstance(key.value, str):
            add(f"{source}.{key.value}", key)
  return found


def internal(found: list[Import], package: str = PACKAGE) -> list[Import]:
  """The imports of one module of ``package`` by another."""
  inside = lambda name: name == package or name.startswith(f"{package}.")  # noqa: E731
  return [i for i in found if inside(i.target) and i.target != i.source]


def layer(module: str) -> int | None:
  """The layer of ``module``'s subpackage, ``None`` for one that ``LAYERS`` does not name."""
  parts = module.split(".")
  return LAYERS.get(parts[1]) if len(parts) > 1 else None


def layering_errors(found: list[Import], package: str = PACKAGE) -> list[str]:
  """Each import from a lower layer to a higher one, or across one layer's packages."""
  top, base = package, f"{package}._lazy"
  errors = []
  for i in internal(found, package):
    if i.target == top:
      errors.append(f"{i}: nothing of the package imports the top-level re-exports")
    elif i.source == base:
      errors.append(f"{i}: `_lazy` imports nothing of the package")
    elif i.source == top or i.target == base:
      continue
    elif (src := i.source.split(".")[1]) != (dst := i.target.split(".")[1]):
      if layer(i.source) is None or layer(i.target) is None:
        errors.append(f"{i}: give {src!r} or {dst!r} a layer in LAYERS (and in design.md)")
      elif layer(i.target) > layer(i.source):
        errors.append(f"{i}: {src!r} is below {dst!r} (docs/design.md, Layers)")
      elif layer(i.target) == layer(i.source) and (src, dst) not in SAME_LAYER:
        errors.append(f"{i}: {src!r} and {dst!r} are on one layer, and import nothing of another")
  return errors


def cycles(found: list[Import], package: str = PACKAGE) -> list[list[Import]]:
  """The import cycles: per strongly connected component of two or more modules, its imports."""
  edges = {}
  for i in internal(found, package):
    edges.setdefault(i.source, {}).setdefault(i.target, i)
  # Tarjan's algorithm, iterative.
  index, low, on_stack, stack, components = {}, {}, set(), [], []
  for start in sorted(edges):
    if start in index:
      continue
    index[start] = low[start] = len(index)
    stack.append(start)
    on_stack.add(start)
    work = [(start, iter(sorted(edges.get(start, {}))))]
    while work:
      node, targets = work[-1]
      for target in targets:
        if target not in index:
          index[target] = low[target] = len(index)
          stack.append(target)
          on_stack.add(target)
          work.append((target, iter(sorted(edges.get(target, {})))))
          break
        if target in on_stack:
          low[node] = min(low[node], index[target])
      else:
        work.pop()
        if work:
          low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
          component = {stack.pop()}
          while node not in component:
            component.add(stack.pop())
          on_stack -= component
          if len(component) > 1:
            components.append(component)
  return [
    [edges[s][t] for s in sorted(c) for t in sorted(edges.get(s, {})) if t in c] for c in components
  ]


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
  return imports()


def _report(what: str, errors: list[str]) -> str:
  return f"{len(errors)} {what}:\n" + "\n".join(errors)


def test_nothing_imports_experiments(package_imports):
  errors = [
    str(i)
    for i in package_imports
    if i.target == "experiments" or i.target.startswith("experiments.")
  ]
  assert not errors, _report("imports of experiments/ (an app passes what a harness needs)", errors)


def test_imports_go_down_the_layers(package_imports):
  errors = layering_errors(package_imports)
  assert not errors, _report("imports against the layers", errors)


def test_no_import_cycle(package_imports):
  found = cycles(package_imports)
  errors = [
    "cycle of " + ", ".join(sorted({i.source for i in c})) + ":\n  " + "\n  ".join(map(str, c))
    for c in found
  ]
  assert not errors, _report("import cycles", errors)


def test_every_module_is_read_and_every_lazy_table_names_a_module(package_imports):
  known = modules()
  assert {TOP, BASE, f"{PACKAGE}.data.pipeline", f"{PACKAGE}.bench.train_step"} <= set(known)
  assert {m.split(".")[1] for m in known if m not in (TOP, BASE)} == set(LAYERS)
  lazy = [i for i in package_imports if i.path.endswith("__init__.py") and i.target not in known]
  assert not lazy, _report("lazy re-exports of no module", [str(i) for i in lazy])


def _write(root: Path, files: dict[str, str]) -> None:
  for name, text in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


def test_the_checks_see_upward_imports_and_cycles_in_functions_and_lazy_tables(tmp_path):
  _write(
    tmp_path,
    {
      "pkg/__init__.py": "from pkg import _lazy\n_lazy.attach(__name__, submodules=('data',))\n",
      "pkg/_lazy.py": "import importlib\n",
      "pkg/data/__init__.py": (
        "from pkg import _lazy\n_lazy.attach(__name__, {'schema': ('Schema',)})\n"
      ),
      "pkg/data/schema.py": "from pkg.data import table\nfrom . import splits\n",
      "pkg/data/table.py": "def f():\n  from pkg.data.schema import Schema\n",
      "pkg/data/splits.py": "from ..train import step\nimport numpy\n",
      "pkg/data/records.py": "from pkg.data import Schema\nimport pkg.models.mlp\nimport pkg\n",
      "pkg/models/__init__.py": "",
      "pkg/models/mlp.py": "from pkg.data import splits\n",
      "pkg/train/__init__.py": "",
      "pkg/train/step.py": "from pkg.data import schema\n",
      "pkg/bench/__init__.py": "",
      "pkg/bench/run.py": (
        "def f():\n  import importlib\n  importlib.import_module(f'experiments.configs.{x}')\n"
      ),
    },
  )
  found = imports(tmp_path, "pkg")
  assert "pkg/bench/run.py:3: pkg.bench.run imports experiments.configs" in map(str, found)
  # The lazy table's module, the submodules a `from` imports, the package for a name.
  assert "pkg/data/__init__.py:2: pkg.data imports pkg.data.schema" in map(str, found)
  assert "pkg/data/records.py:1: pkg.data.records imports pkg.data" in map(str, found)
  assert "pkg/data/splits.py:1: pkg.data.splits imports pkg.train.step" in map(str, found)
  errors = layering_errors(found, "pkg")
  assert errors == [
    "pkg/data/records.py:2: pkg.data.records imports pkg.models.mlp: 'data' and 'models' are "
    "on one layer, and import nothing of another",
    "pkg/data/records.py:3: pkg.data.records imports pkg: nothing of the package imports the "
    "top-level re-exports",
    "pkg/data/splits.py:1: pkg.data.splits imports pkg.train.step: 'data' is below 'train' "
    "(docs/design.md, Layers)",
    "pkg/models/mlp.py:1: pkg.models.mlp imports pkg.data.splits: 'models' and 'data' are on "
    "one layer, and import nothing of another",
  ]
  # schema -> table (in a function) -> schema; schema -> splits -> train.step -> schema; not
  # pkg.data (its lazy table imports schema, but only records imports the package).
  (component,) = cycles(found, "pkg")
  assert {i.source for i in component} == {
    "pkg.data.schema",
    "pkg.data.table",
    "pkg.data.splits",
    "pkg.train.step",
  }
  assert "pkg/data/table.py:2: pkg.data.table imports pkg.data.schema" in map(str, component)


@pytest.mark.parametrize("cycle", [("a", "b"), ("a", "b", "c")])
def test_a_cycle_through_a_package_init_is_found(tmp_path, cycle):
  files = {"pkg/__init__.py": "", "pkg/data/__init__.py": "from pkg.data import a\n"}
  for here, there in zip(cycle, cycle[1:] + cycle[:1], strict=True):
    files[f"pkg/data/{here}.py"] = f"from pkg.data import {there}\n"
  files["pkg/data/a.py"] += "from pkg.data import Name\n"  # The package, through its __init__.
  _write(tmp_path, files)
  (component,) = cycles(imports(tmp_path, "pkg"), "pkg")
  assert {i.source for i in component} == {f"pkg.data.{m}" for m in cycle} | {"pkg.data"}
