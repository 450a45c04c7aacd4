"""The house's walls, read from the source: who may import whom, and where things are spelled.

- The coordinator (``kdiff/``) imports no deep-learning framework and no ``backends`` module. The
  in-job probe (``kdiff/probe/``) runs inside the user's training job: it reaches its framework's
  capture module through ``backends.registry`` and nothing else of ``backends``.
- ``backends/`` imports from ``kdiff`` only the protocol (``kdiff.protocol``).
- No module imports another's private name.
- Every backend folder holds the same modules (``backends.registry.TEMPLATE``).
- Array keys are spelled only in ``kdiff/protocol/vocabulary.py``; the commands it lists are the
  ones the workers register."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"tensorflow", "tf_keras", "keras", "jax", "jaxlib", "torch", "theano", "flax", "optree"}


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names taken from it, line) for every import in the file, at any depth, and every
    importlib.import_module / __import__ of a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-node.level])
            module = f"{package}.{node.module}" if node.module else package
            found.append((module, [alias.name for alias in node.names], node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) == "__import__")):
            found.append((node.args[0].value, [], node.lineno))
    return found


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_coordinator_imports_no_framework_and_no_backend():
    wrong = []
    for path in _sources("kdiff"):
        in_probe = path.relative_to(ROOT).parts[:2] == ("kdiff", "probe")
        for module, names, line in _imports(path):
            top = module.split(".")[0]
            registry = module == "backends.registry" or (module == "backends" and names == ["registry"])
            if top in FRAMEWORKS:
                wrong.append(f"{_where(path, line)} imports {module}")
            elif top == "backends" and not (in_probe and registry):
                wrong.append(f"{_where(path, line)} imports {module}")
    assert wrong == []


def test_backends_import_only_the_protocol_from_kdiff():
    wrong = [f"{_where(path, line)} imports {module}"
             for path in _sources("backends") for module, names, line in _imports(path)
             if module.split(".")[0] == "kdiff"
             and not (module.startswith("kdiff.protocol") or (module == "kdiff" and set(names) <= {"protocol"}))]
    assert wrong == []


def test_no_module_takes_another_modules_private_names():
    wrong = [f"{_where(path, line)} takes {name} from {module}"
             for folder in ("kdiff", "backends") for path in _sources(folder)
             for module, names, line in _imports(path)
             for name in names if name.startswith("_") and not name.startswith("__")]
    assert wrong == []


def test_every_backend_folder_fills_the_same_template():
    from backends.registry import BACKENDS, TEMPLATE

    for backend in BACKENDS.values():
        folder = ROOT / "backends" / backend.package
        modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
        assert modules == set(TEMPLATE), f"backends/{backend.package}/ has {sorted(modules)}"
        assert (ROOT / "backends" / backend.family / "__init__.py").is_file()


def test_the_workers_answer_exactly_the_commands_the_protocol_lists():
    import backends.serve  # noqa: F401  (registers every command module)
    from backends.common.commands import COMMANDS
    from kdiff.protocol.vocabulary import COMMANDS as LISTED

    assert sorted(COMMANDS) == sorted(LISTED)


# numbered array keys written by hand: {str(i): ...}, f"x{i}", sorted(arrays, key=int)
HAND_SPELLED_KEYS = re.compile(r"\{str\(i\)\s*:|f\"[a-z]{1,2}\{i\}\"|f\"[a-z]:\{kind\}:\{i\}\"|sorted\(\w+, key=int\)")


@pytest.mark.parametrize("folder", ["kdiff", "backends"])
def test_array_keys_are_spelled_only_in_the_vocabulary(folder):
    wrong = [f"{_where(path, number)}: {line.strip()}"
             for path in _sources(folder) if path != ROOT / "kdiff" / "protocol" / "vocabulary.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if HAND_SPELLED_KEYS.search(line)]
    assert wrong == []


def test_the_layering_checks_can_fail(tmp_path):
    """The import reader sees imports inside functions, relative imports and import_module calls."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    import tensorflow as tf\n    from backends.modern_keras import loading\n"
                      "    importlib.import_module('torch')\n")
    modules = [module for module, _, _ in _imports(source)]
    assert sorted(modules) == ["backends.modern_keras", "tensorflow", "torch"]
    assert HAND_SPELLED_KEYS.search('arrays = {str(i): x for i, x in enumerate(xs)}')
    assert HAND_SPELLED_KEYS.search('out[f"nb{i}"]')
