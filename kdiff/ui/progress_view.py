"""Progress while environments are built, workers start and layers are compared.

On a terminal it is a live spinner on stderr; otherwise plain lines on stderr."""
from __future__ import annotations

from rich.console import Console

from kdiff.progress import Progress


class ConsoleProgress(Progress):
    def __init__(self, console: Console):
        self.console = console
        self.status = console.status("starting") if console.is_terminal else None
        self.current = ""

    def __enter__(self) -> "ConsoleProgress":
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.stop()

    def stage(self, text: str) -> None:
        self.current = text
        if self.status is not None:
            self.status.update(text + " …")
        else:
            self.console.print(f"kdiff: {text}", highlight=False)

    def log(self, text: str) -> None:
        self.console.print(f"kdiff: {text}", style="dim", highlight=False)

    def layer_done(self, done: int, total: int) -> None:
        if self.status is not None:
            self.status.update(f"{self.current} … {done}/{total} layers compared")
