"""What the coordinator checks of the command line before any environment or worker starts: the
files it must read are readable regular files, the paths it will write can be written, and every
option value is in range. A mistake found here costs the user a second, not a whole run."""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from kdiff.errors import InputError, UsageError


def check_options(args: argparse.Namespace, data_files: dict[str, str] | None = None) -> None:
    """Every option of a diff, fix or train command line that names a value, a file or a folder;
    ``data_files``: the data files it reads (the sample, ...), by what they are."""
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError("option-range", f"--timeout {timeout:g}: a deadline must be a positive number of seconds",
                         "e.g. --timeout 600")
    for name in ("atol", "rtol"):
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError("option-range", f"--{name} {value:g}: a tolerance must be a finite number >= 0",
                             f"e.g. --{name} 1e-5")
    for side in ("a", "b"):
        python = getattr(args, f"{side}_python", None)
        if python:
            path = Path(python)
            if not path.is_file() or not os.access(path, os.X_OK):
                what = "a folder" if path.is_dir() else "not an executable file" if path.exists() else "not found"
                raise InputError("python-not-found", f"--{side}-python {python}: {what}",
                                 "pass the path of a Python interpreter (e.g. /path/to/venv/bin/python)")
    if getattr(args, "custom_objects", None):
        readable_file(args.custom_objects, "custom objects file",
                      "a Python file defining the functions and layer classes by name")
    for label in getattr(args, "labels", None) or ():
        readable_file(label, "labels file", "a .npy array saved with numpy.save")
    for role, path in (data_files or {}).items():
        readable_file(path, f"{role} file", "a .npy array saved with numpy.save")
    json_path = getattr(args, "json", None)
    if json_path and json_path != "-":
        writable_file(json_path, "--json")
    if getattr(args, "html", None):
        writable_file(args.html, "--html")
    for option, folder in (("--dump", getattr(args, "dump", None)), ("--write-fixed", getattr(args, "write_fixed", None)),
                           ("-o", getattr(args, "output", None))):
        if folder:
            writable_folder(Path(folder), option)


def readable_file(path: str, role: str, wanted: str) -> Path:
    """The path, when it names a regular file kdiff can open; else an InputError saying what it is."""
    file = Path(path)
    if not file.exists():
        raise InputError("file-not-found", f"{role} not found: {path}", "check the path")
    if file.is_dir():
        raise InputError("file-is-folder", f"{role} {path} is a folder, not a file", f"pass {wanted}")
    if not file.is_file():
        raise InputError("file-not-regular", f"{role} {path} is not a regular file (a device, pipe or socket)",
                         f"pass {wanted}")
    try:
        with open(file, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise InputError("file-unreadable", f"{role} {path} cannot be read ({exc.strerror or exc})",
                         "check the file's permissions") from exc
    return file


def writable_file(path: str, option: str) -> None:
    """A file kdiff will write at the end of a run: its folder exists and can be written now."""
    file = Path(path)
    if file.is_dir():
        raise UsageError("output-is-folder", f"{option} {path} is a folder", f"give {option} a file name")
    folder = file.parent if str(file.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError("output-folder-missing", f"{option} {path}: the folder {folder} does not exist",
                         f"create it first, or give {option} a path in an existing folder")
    _try_writing(folder, option)


def writable_folder(folder: Path, option: str) -> None:
    """A folder kdiff will write into: it exists and can be written, or it can be made where its
    nearest existing parent is a folder that can be written (nothing is made now: a run that ends
    writing nothing leaves no folder behind)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError("output-not-folder", f"{option} {folder} is a file, not a folder", f"give {option} a folder")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError("output-unwritable", f"{option} {folder} cannot be created: {existing} is a file",
                         f"give {option} a folder you can write")
    _try_writing(existing, option)


def _try_writing(folder: Path, option: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError("output-unwritable", f"{option}: the folder {folder} cannot be written ({exc.strerror or exc})",
                         f"give {option} a path in a folder you can write") from exc
