"""Where kdiff writes the traceback of a failure of its own: ``$KDIFF_HOME/logs/kdiff-bug-*.log``, or the
temporary folder where that cannot be written. The message a user sees names the file."""
from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

from kdiff import __version__


def write_bug_log(exc: BaseException) -> str:
    """The path of a new log holding the exception's traceback (or a sentence saying none could be written,
    the traceback then going to stderr)."""
    from kdiff.environments import kdiff_home

    text = "".join(traceback.format_exception(exc))
    for folder in (kdiff_home() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix="kdiff-bug-", suffix=".log", dir=folder)
            with os.fdopen(handle, "w") as log:
                log.write(f"kdiff {__version__}, argv {sys.argv!r}\n{text}")
            return name
        except OSError:
            continue
    sys.stderr.write(text)
    return "(no log could be written; the traceback is above)"


def one_line(exc: BaseException) -> str:
    """``Type: message``, on one line and at most 200 characters."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text.strip().splitlines()[0][:200]
