"""The per-layer table and the summary of a DiffReport."""
from __future__ import annotations

import math
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kdiff.metrics import LayerMetrics
from kdiff.report import DIVERGED, MATCH, ONLY_A, ONLY_B, PROPAGATED, DiffReport, LayerResult
from kdiff.ui.findings_view import gradient_verdict, render_findings, render_written
from kdiff.ui.numbers import fmt

STATUS_STYLE = {MATCH: "green", DIVERGED: "bold red", PROPAGATED: "yellow", ONLY_A: "magenta", ONLY_B: "magenta"}
BAR_FLOOR = 1e-8  # relative error at an empty bar; 1.0 fills it
BAR_CELLS = 8     # one cell per decade from BAR_FLOOR to 1


def error_bar(max_rel: float | None) -> str:
    """Relative error on a log scale: each cell is a factor of ten from 1e-8 up to 1."""
    if max_rel is None:
        return ""
    if not math.isfinite(max_rel) or max_rel >= 1.0:
        return "█" * BAR_CELLS
    if max_rel <= BAR_FLOOR:
        return "·"
    fraction = (math.log10(max_rel) - math.log10(BAR_FLOOR)) / -math.log10(BAR_FLOOR)
    return "█" * max(1, round(fraction * BAR_CELLS))


def grad_cell(grad) -> Text:
    """The largest relative error of the layer's gradients (output and weights), green when all match,
    yellow when they differ only by what the forward pass carries (kdiff.gradient_isolation)."""
    if grad is None:
        return Text("-")
    values = [m.max_rel for m in (grad.output, *(w for _, w in grad.weights)) if isinstance(m, LayerMetrics)]
    style = "green" if grad.matches else "yellow" if grad.carried else "red"
    return Text(fmt(max(values)) if values else "-", style=style)


def shape_text(layer: LayerResult) -> str:
    a = "x".join("?" if d is None else str(d) for d in layer.a_shape) if layer.a_shape else "-"
    if layer.b_shape is not None and layer.b_shape != layer.a_shape:
        b = "x".join(str(d) for d in layer.b_shape)
        return f"{a} | {b}"
    return a


FULL_COLUMNS = ("#", "layer", "class", "shape", "max abs", "max rel", "cosine", "rel error", "status")
COMPACT_COLUMNS = ("layer", "class", "max rel", "rel error", "status")  # below FULL_WIDTH columns
FULL_WIDTH = 96
GRAD_WIDTH = 100  # from this width on, gradients (when compared) take the cosine column's place


def layer_table(report: DiffReport, width: int = FULL_WIDTH) -> Table:
    columns = FULL_COLUMNS if width >= FULL_WIDTH else COMPACT_COLUMNS
    if width >= GRAD_WIDTH and any(layer.grad is not None for layer in report.layers):
        columns = tuple("grad rel" if column == "cosine" else column for column in columns)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
    for column in columns:
        justify = "right" if column in ("#", "max abs", "max rel", "cosine", "grad rel") else "left"
        if column == "layer":
            table.add_column(column, justify=justify, min_width=12, overflow="fold")
        else:
            table.add_column(column, justify=justify, no_wrap=True)
    first = report.first_divergence
    explained_by = {name: number for number, finding in enumerate(report.findings, 1)
                    for name in (finding.layer, *finding.explains)}
    for index, layer in enumerate(report.layers):
        m = layer.metrics
        marker = f" [{explained_by[layer.name]}]" if layer.name in explained_by else ""
        style = STATUS_STYLE.get(layer.status, "")
        is_first = first is not None and first[0] == index
        cells = {
            "#": str(index),
            "layer": layer_text(layer),
            "class": layer.class_name if layer.b_class_name in ("", layer.class_name)
            else f"{layer.class_name} ~ {layer.b_class_name}",
            "shape": shape_text(layer),
            "max abs": fmt(m.max_abs if m else None),
            "max rel": fmt(m.max_rel if m else None),
            "cosine": f"{m.cosine:.6f}" if m and math.isfinite(m.cosine) else "-",
            "rel error": Text(error_bar(m.max_rel if m else None), style=style),
            "grad rel": grad_cell(layer.grad),
            "status": Text(("▶ " if is_first else "") + layer.status + marker, style=style),
        }
        table.add_row(*(cells[column] for column in columns), style="on grey15" if is_first else None)
    return table


def layer_text(layer) -> str:
    """The layer's name; a pair named otherwise on side B as 'a ~ b'; a group with its layers on each
    side that has several: 'conv [B: pad + conv]'."""
    text = layer.name if not layer.b_name else f"{layer.name} ~ {layer.b_name}"
    groups = [f"{side}: {' + '.join(members)}" for side, members in (("A", layer.a_members), ("B", layer.b_members))
              if members]
    return text + (f" [{'; '.join(groups)}]" if groups else "")


def backends_line(report: DiffReport) -> Text:
    parts = []
    for info in report.backends:
        versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
        parts.append(f"{info.side.upper()}: {info.name} ({versions}; {info.device or 'cpu'})")
    return Text("\n".join(parts), style="bold")


def summary(report: DiffReport) -> Text:
    text = Text()
    for side, differing in report.noise_floor.items():
        if differing:
            first_noisy = next(iter(differing))
            text.append(f"Side {side.upper()} disagrees with itself on two runs of the same input at {len(differing)} "
                        f"layer(s), first {first_noisy} (by up to {fmt(max(differing.values()))}): differences there "
                        "are its own noise.\n", style="bold magenta")
    first = report.first_divergence
    counts = {status: sum(1 for layer in report.layers if layer.status == status)
              for status in (MATCH, DIVERGED, PROPAGATED, ONLY_A, ONLY_B)}
    if first is None and report.exit_code == 0:
        text.append(f"All {len(report.layers)} layers match", style="bold green")
        text.append(" (tolerances derived per layer from dtype and reduction length)." if report.tolerance is None
                    else f" (atol {report.tolerance.atol:g}, rtol {report.tolerance.rtol:g}).")
        _gradient_summary(report, text)
        return text
    if first is not None:
        index, layer = first
        m = layer.metrics
        text.append("First divergence: ", style="bold red")
        text.append(f"{layer.name} ({layer.class_name}), layer {index}", style="bold")
        text.append("\n  its inputs match on both sides, but its output does not")
        if m is not None:
            tolerance = layer.tolerance or report.tolerance
            text.append(f": max abs {fmt(m.max_abs)}, max rel {fmt(m.max_rel)}, "
                        f"{m.out_of_tolerance:.1%} of elements outside atol {tolerance.atol:.3g} + "
                        f"rtol {tolerance.rtol:.3g}·|x|")
            if m.nan_a or m.nan_b or m.inf_a or m.inf_b:
                text.append(f"; NaN A/B {m.nan_a}/{m.nan_b}, Inf A/B {m.inf_a}/{m.inf_b}")
            if report.tolerance is None and tolerance is not None and tolerance.reason:
                text.append(f"\n  tolerance: {tolerance.reason}", style="dim")
        elif layer.note:
            text.append(f": {layer.note}")
        text.append("\n")
    text.append(f"  {counts[DIVERGED]} layer(s) diverge on their own, {counts[PROPAGATED]} carry an earlier "
                f"divergence, {counts[MATCH]} match")
    if counts[ONLY_A] or counts[ONLY_B]:
        text.append(f", {counts[ONLY_A] + counts[ONLY_B]} exist on one side only")
    text.append(".")
    _gradient_summary(report, text)
    for note in report.notes:
        text.append(f"\n  note: {note}", style="dim")
    return text


def _gradient_summary(report: DiffReport, text: Text) -> None:
    verdict = gradient_verdict(report)
    if verdict is None:
        return
    text.append(f"\n  {verdict[0]}", style=verdict[1])
    loss = report.gradient_loss or {}
    if loss.get("kind") == "loss":
        text.append(f"\n  Gradients of the loss {loss['name']} on {', '.join(Path(p).name for p in loss['labels'])}.")


def render_report(report: DiffReport, console: Console) -> None:
    console.print(backends_line(report))
    for warning in report.input_warnings:
        console.print(Text.assemble(("warning", "bold yellow"), f": {warning}"), soft_wrap=True)
    console.print(layer_table(report, console.width))
    console.print(summary(report))
    render_findings(report, console)
    render_written(report, console)
