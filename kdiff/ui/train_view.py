"""``kdiff train`` on screen: a live table of the steps while they run (a line per step when
not on a terminal), then the layer table of the first diverging step and the findings."""
from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kdiff.train.report import StepRecord, TrainReport
from kdiff.train.session import TrainProgress
from kdiff.ui.findings_view import finding_panel
from kdiff.ui.numbers import fmt

# Findings solved from a step and proven by re-running it: optimizer-epsilon, -learning-rate,
# -decay-rate, -formula, -iteration-offset (Adam's step number t), and batchnorm-momentum
# (a BatchNormalization layer's moving-statistics momentum)
STEP_CAUSES = ("optimizer-", "batchnorm-momentum")


class TrainView(TrainProgress):
    def __init__(self, console: Console):
        self.console = console
        self.records: list[StepRecord] = []
        self.current = "starting"
        self.live = Live(self._render(), console=console, transient=True) if console.is_terminal else None

    def __enter__(self) -> "TrainView":
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()

    def stage(self, text: str) -> None:
        self.current = text
        if self.live is not None:
            self.live.update(self._render())
        else:
            self.console.print(f"kdiff: {text}", highlight=False)

    def log(self, text: str) -> None:
        self.console.print(f"kdiff: {text}", style="dim", highlight=False)

    def step_done(self, record: StepRecord, total: int) -> None:
        self.records.append(record)
        if self.live is not None:
            self.live.update(self._render())
        else:
            self.console.print(f"kdiff: step {record.step + 1}/{total}: " + _step_line(record), highlight=False)

    def _render(self) -> Group:
        return Group(steps_table(self.records), Text(f"… {self.current}", style="dim"))


def _step_line(record: StepRecord) -> str:
    worst = record.worst_update
    where = f"worst update {worst.weight} max rel {fmt(worst.metrics.max_rel)}" if worst else "no paired weights"
    return f"loss A {record.loss_a:.6g}, B {record.loss_b:.6g}; {where}" + (
        f"; {len(record.diverged_weights)} update(s) diverged" if record.diverged_weights else "")


def steps_table(records: list[StepRecord]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("step", "loss A", "loss B", "worst weight update", "max abs", "max rel", "status"):
        table.add_column(column, no_wrap=True)
    for record in records:
        worst = record.worst_update
        status = (Text(f"✗ {len(record.diverged_weights)} diverged", style="bold red") if record.diverged_weights
                  else Text("✓ match", style="green"))
        table.add_row(str(record.step), f"{record.loss_a:.6g}", f"{record.loss_b:.6g}", worst.weight if worst else "-",
                      fmt(worst.metrics.max_abs) if worst else "-", fmt(worst.metrics.max_rel) if worst else "-", status)
    return table


def layers_table(report: TrainReport) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, title_justify="left",
                  title=f"step {report.first_divergence[0]}, layer by layer (max rel error, A vs B)")
    for column in ("layer", "class", "activation", "gradient", "weight", "weight grad", "update", "slots"):
        table.add_column(column, no_wrap=True)
    for layer in report.divergence_layers:
        rows = layer.weights or (("", {}),)
        for number, (weight, parts) in enumerate(rows):
            slots = ", ".join(f"{key[5:]} {_rel(value)}" for key, value in parts.items() if key.startswith("slot:"))
            first = number == 0
            table.add_row(layer.name if first else "", layer.class_name if first else "",
                          _rel(layer.activation) if first else "", _rel(layer.gradient) if first else "",
                          weight, _rel(parts.get("gradient")), _rel(parts.get("update")), slots)
    return table


def _rel(metrics) -> str | Text:
    if metrics is None:
        return ""
    if isinstance(metrics, str):
        return Text(metrics, style="dim")
    return Text(fmt(metrics.max_rel), style="" if metrics.matches else "bold red")


def step_panel(number: int, finding) -> Panel:
    """A finding solved from both sides' step and proven by re-running it on side B."""
    detail = finding.detail
    body = Text()
    body.append("solved from each side's step: ", style="bold")
    setting = f"{finding.layer} {detail['setting']}" if finding.cause == "batchnorm-momentum" else detail["setting"]
    body.append(f"{setting}: side A {_value(detail['a'])}, side B {_value(detail['b'])}\n")
    if "t_counter" in detail:
        body.append(f"  (by each optimizer's own iteration counter: side A t={detail['t_counter']['a']}, "
                    f"side B t={detail['t_counter']['b']})\n")
    if "variance" in detail:
        body.append(f"  moving variance: side A towards the {detail['variance']['a']}, side B towards the "
                    f"{detail['variance']['b']}\n")
    body.append("evidence: ", style="bold")
    after = finding.after
    rerun = ", ".join(f"{key}={_value(value)}" for key, value in detail["rerun_with"].items())
    if after is None:
        body.append(f"side B cannot re-run step {detail['step']} with side A's formula\n")
    else:
        body.append(f"step {detail['step']} re-run on side B with {rerun}: worst update max rel "
                    f"{fmt(finding.before.max_rel)} → {fmt(after.max_rel)}, max abs {fmt(finding.before.max_abs)} → "
                    f"{fmt(after.max_abs)}\n")
    together = detail.get("proven_together_with")
    if together:
        body.append(f"  proven together with {', '.join(together)}: alone it leaves max rel "
                    f"{fmt(float(detail['alone']['after']['max_rel']))}\n")
    elif "together" in detail:
        body.append(f"  with all of {', '.join(detail['together']['with'])} together: max rel "
                    f"{fmt(float(detail['together']['after']['max_rel']))}\n")
    body.append("fix: ", style="bold")
    body.append(finding.fix + "\n")
    body.append(finding.code, style="cyan")
    status = ("✓ verified" + (f" together with {', '.join(together)}" if together else "")) if finding.verified \
        else "not verified"
    title = Text.assemble((f"[{number}] ", "bold"), (finding.cause, "bold cyan"), f" at step {detail['step']}, "
                          f"{finding.layer}  ", (status, "green" if finding.verified else "yellow"))
    return Panel(body, title=title, title_align="left", border_style="cyan")


def _value(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render_train_report(report: TrainReport, console: Console) -> None:
    for info in report.backends:
        versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
        optimizer = report.optimizers[info.side]
        settings = ", ".join(f"{k}={_value(v)}" for k, v in optimizer["config"].items()
                             if k in ("learning_rate", "epsilon", "beta_1", "beta_2", "rho", "momentum"))
        console.print(f"{info.side.upper()}: {info.name} ({versions}); {optimizer['optimizer']}({settings})",
                      highlight=False)
    console.print(f"loss {report.loss}, batch size {report.batch_size}, {len(report.steps)} step(s)\n",
                  highlight=False)
    if report.forward_divergence is not None:
        console.print(Text(f"The models already differ: {report.forward_divergence['message']}.", style="bold red"),
                      soft_wrap=True)
    console.print(steps_table(list(report.steps)))
    if report.first_divergence is None and report.forward_divergence is not None:
        console.print(Text("\nThe weight updates are within tolerance at every step, but the forward passes differ "
                           "(above): the models do not agree.", style="bold red"))
    elif report.first_divergence is None:
        console.print(Text("\nThe weight updates agree at every step.", style="bold green"))
    else:
        step, weight = report.first_divergence
        console.print(Text(f"\nFirst divergence: step {step}, weight {weight}", style="bold red"))
        console.print(layers_table(report))
    for number, finding in enumerate(report.findings, 1):
        if finding.cause.startswith(STEP_CAUSES):
            console.print(step_panel(number, finding))
        else:
            console.print(finding_panel(number, finding))
    for note in report.notes:
        console.print(Text(f"note: {note}", style="dim"), soft_wrap=True)
