"""What ``kdiff attach`` shows: the runs' losses while it waits, then the snapshot's report."""
from __future__ import annotations

import time

from rich.console import Console
from rich.text import Text

from kdiff.report import DiffReport
from kdiff.ui.numbers import fmt
from kdiff.ui.report_view import render_report

REFRESH_SECONDS = 0.5
MAX_HISTORY = 4000  # loss points kept per followed run


class LiveLosses:
    """One line per step that every run has reached, at most every REFRESH_SECONDS (the latest one)."""

    def __init__(self, console: Console, labels: list[str]):
        self.console = console
        self.labels = labels
        self.steps: dict[int, dict[str, dict]] = {}
        self.shown_at = 0.0
        self.history: dict[str, list] = {}  # label -> [[step, loss], ...] as followed, for the HTML report

    def remember(self, label: str, step, loss) -> None:
        kept = self.history.setdefault(label, [])
        if isinstance(step, int) and isinstance(loss, (int, float)) and not isinstance(loss, bool):
            kept.append([step, loss])
        if len(kept) > MAX_HISTORY:
            del kept[::2]  # a long run keeps every other point: the curve's shape, in bounded memory

    def __call__(self, label: str, metrics: dict) -> None:
        step = metrics.get("step")
        self.remember(label, step, metrics.get("loss"))
        self.steps.setdefault(step, {})[label] = metrics
        if len(self.steps[step]) < len(self.labels) or time.monotonic() - self.shown_at < REFRESH_SECONDS:
            return
        self.shown_at = time.monotonic()
        self.console.print(loss_line(step, self.steps.pop(step), self.labels), highlight=False)
        self.steps = {s: runs for s, runs in self.steps.items() if s > step}


def loss_line(step: int, runs: dict[str, dict], labels: list[str]) -> Text:
    text = Text(f"step {step:>7}", style="bold")
    for label in labels:
        metrics = runs.get(label, {})
        text.append(f"   {label}: loss {_value(metrics.get('loss'))}  |grad| {_value(metrics.get('grad_norm'))}")
    return text


def _value(value) -> str:
    return value if isinstance(value, str) else fmt(value)


def render_attach_report(report: DiffReport, runs: list[dict], console: Console) -> None:
    """``runs``: per live run, {"label", "endpoint", "step", "loss", "megabytes", "capture_seconds"}."""
    for run in runs:
        console.print(Text(f"{run['label']}: {run['endpoint']} at step {run['step']}, loss {_value(run['loss'])} "
                           f"(snapshot of {run['megabytes']:.1f} MB, captured in the job in "
                           f"{run['capture_seconds']:.2f} s)", style="bold cyan"))
    render_report(report, console)
