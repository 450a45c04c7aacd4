"""What a --custom-objects file defines, read by the coordinator without running it: the names of its
top-level classes, functions and assignments (those under an ``if`` or ``try`` at top level too, as a
file written for two Kerases has them). The coordinator imports no framework, and the file imports
one; only the workers run it (backends/common/worker_base.load_custom_objects). With these names a
model's layer class of the user's own is accepted up front, and one the file does not define is
refused with the file named."""
from __future__ import annotations

import ast
from pathlib import Path

from kdiff.errors import InputError


def defined_names(path: str | Path) -> frozenset[str]:
    """The public names the file binds at top level; an InputError when it is not Python."""
    source = Path(path).read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:  # (ValueError: null bytes)
        where = f" (line {error.lineno})" if getattr(error, "lineno", None) else ""
        why = getattr(error, "msg", None) or str(error) or type(error).__name__
        raise InputError("custom-objects-syntax", f"custom objects file {path} is not valid Python{where}: {why}",
                         "pass a Python file that defines your functions and layer classes by name") from None
    names: set[str] = set()
    _collect(tree.body, names)
    return frozenset(name for name in names if not name.startswith("_"))


def _collect(statements: list, names: set[str]) -> None:
    for statement in statements:
        if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                names.update(node.id for node in ast.walk(target) if isinstance(node, ast.Name))
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in statement.names
                         if alias.name != "*")
        elif isinstance(statement, (ast.If, ast.Try, ast.With)) or type(statement).__name__ == "TryStar":
            for block in ("body", "orelse", "finalbody"):
                _collect(getattr(statement, block, []) or [], names)
            for handler in getattr(statement, "handlers", []) or []:
                _collect(handler.body, names)
