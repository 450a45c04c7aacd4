"""How an error looks: what went wrong, its reference, what to do, and any detail."""
from __future__ import annotations

from rich.console import Console
from rich.text import Text

from kdiff.errors import KdiffError


def render_error(error: KdiffError, console: Console) -> None:
    text = Text()
    text.append("error", style="bold red")
    text.append(f": {error.message}\n")
    text.append(f"  reference: {error.reference}\n", style="dim")
    if error.hint:
        text.append("  hint: ", style="bold cyan")
        text.append(f"{error.hint}\n")
    console.print(text, end="", soft_wrap=True)
    if error.detail:
        console.print(Text("  " + error.detail.replace("\n", "\n  "), style="dim"), soft_wrap=True)
