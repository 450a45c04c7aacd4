"""Panels under the layer table: one per finding, and one for a divergence nothing explains."""
from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from kdiff.report import DiffReport
from kdiff.ui.numbers import fmt


def finding_panel(number: int, finding) -> Panel:
    body = Text()
    if finding.after is not None:
        body.append("evidence: ", style="bold")
        body.append(f"{finding.layer} alone on side A's inputs: max abs {fmt(finding.before.max_abs)} → "
                    f"{fmt(finding.after.max_abs)}, max rel {fmt(finding.before.max_rel)} → "
                    f"{fmt(finding.after.max_rel)} with the fix\n")
    else:
        body.append("evidence: ", style="bold")
        body.append(f"two runs of the same input differ by up to {fmt(finding.before.max_abs)}, first at "
                    f"{finding.layer}\n")
    if len(finding.explains) > 1:
        body.append("explains: ", style="bold")
        body.append(f"{len(finding.explains)} layers ({', '.join(finding.explains[:4])}"
                    f"{', …' if len(finding.explains) > 4 else ''})\n")
    body.append("fix: ", style="bold")
    body.append(finding.fix)
    status = "✓ verified" if finding.verified else "not verified"
    title = Text.assemble((f"[{number}] ", "bold"), (finding.cause, "bold cyan"), f" at {finding.layer}  ",
                          (status, "green" if finding.verified else "yellow"))
    return Panel(Group(body, Syntax(finding.code, "python", theme="ansi_dark", background_color="default")),
                 title=title, title_align="left", border_style="cyan")


def unexplained_panel(unexplained) -> Panel:
    body = Text()
    body.append((unexplained.reason or f"No rule explains the divergence at {unexplained.layer} "
                                       f"({unexplained.class_name}).") + "\n", style="bold")
    body.append(f"side B's layer alone on side A's inputs: max abs {fmt(unexplained.isolated.max_abs)}, "
                f"max rel {fmt(unexplained.isolated.max_rel)}; its own inputs differed from A's by max rel "
                f"{fmt(unexplained.input_error)}\n")
    if unexplained.worst_positions:
        body.append("largest errors: " + "; ".join(
            f"axis {axis} index {index} (max abs {fmt(error)})" for axis, index, error in unexplained.worst_positions))
    return Panel(body, title=Text("unexplained", style="bold red"), title_align="left", border_style="red")


def gradient_verdict(report: DiffReport) -> tuple[str, str] | None:
    """What the backward diff found, in a sentence, and its style; None where gradients were not compared."""
    if not any(layer.grad is not None for layer in report.layers):
        return None
    grad_first = report.first_grad_divergence
    carried = sum(1 for layer in report.layers if layer.grad is not None and layer.grad.carried)
    if grad_first is not None:
        index, layer = grad_first
        return (f"First gradient divergence (from the loss backwards): {layer.name} ({layer.class_name}), "
                f"layer {index}.", "yellow")
    if carried:
        return (f"Gradients: {carried} layer(s)' gradients differ by more than their tolerance only by what the "
                "forward pass carries (each backward that computes them matches alone on side A's values); "
                "the others match.", "green")
    return "Gradients: every layer's output and weight gradients match.", "green"


def render_findings(report: DiffReport, console: Console) -> None:
    for number, finding in enumerate(report.findings, 1):
        console.print(finding_panel(number, finding))
    if report.unexplained is not None:
        console.print(unexplained_panel(report.unexplained))
    if report.repaired is not None:
        after = report.repaired
        if after.exit_code == 0:
            console.print(Text(f"With the {len(report.findings)} proven fix(es) applied, all {len(after.layers)} "
                               "layers match.", style="bold green"))
        elif after.first_divergence is not None:
            index, layer = after.first_divergence
            console.print(Text(f"With the proven fix(es) applied, the first divergence is {layer.name} "
                               f"(layer {index}).", style="bold yellow"))
        verdict = gradient_verdict(after)
        if verdict is not None and after.first_divergence is None:
            console.print(Text(f"  {verdict[0]}", style=verdict[1]))


def render_written(report: DiffReport, console: Console) -> None:
    written = report.written
    if written is None:
        return
    style = "bold green" if written.verified else "bold red"
    text = Text(("✓ " if written.verified else "✗ ") + written.message, style=style)
    for path in written.files:
        text.append(f"\n  wrote {path}", style="")
    console.print(text, soft_wrap=True)
