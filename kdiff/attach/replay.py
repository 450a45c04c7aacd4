"""Replaying snapshots: a live run's snapshot against a reference worker that loads the
snapshot's model, or two runs' snapshots against each other, through the same comparison,
classification and diagnosis as the offline command (kdiff.session.DiffSession). The snapshot
side is a replay worker (backends.common.replay_worker) serving what the probe captured.

Gradients are those of the run's own training loss: both sides differentiate
``sum_k sum(output_k * P_k)`` with ``P_k`` the run's d loss / d output k, which by the chain rule
gives the training loss's gradient for every layer output and weight.

A reference worker loads the snapshot's model file for the architecture and is then given the
snapshot's weights, layer by layer (the cached file may hold an earlier snapshot's). A model with
several inputs is compared and diagnosed the same way, one array per input."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from kdiff.attach.snapshot import write_snapshot
from kdiff.protocol.snapshot import Snapshot
from kdiff.progress import Progress
from kdiff.session import DiffOptions, DiffSession, Side
from kdiff.errors import InputError
from kdiff.gradients import backward_and_compare
from kdiff.report import DiffReport

REPLAY_WORKER = "backends.common.replay_worker"


def live_side(name: str, snapshot: Snapshot, folder: Path, label: str = "live") -> Side:
    """A side served by the replay worker, in this interpreter (it needs numpy and pyzmq only)."""
    model = write_snapshot(snapshot, folder)
    return Side(name, f"{label} {snapshot.backend}", str(model), python=sys.executable,
                worker_module=REPLAY_WORKER, worker_options={"snapshot": str(folder)})


def replay(a: Side, b: Side, snapshot: Snapshot, batch_path: str, options: DiffOptions, progress: Progress,
           diagnose: bool) -> DiffReport:
    """Side A replays ``snapshot``; side B is a reference worker or another snapshot's replay."""
    inputs = snapshot.inputs
    with DiffSession(a, b, replace(options, gradients=False), progress) as session:
        if b.worker_module != REPLAY_WORKER:
            progress.stage(f"giving the reference the weights of step {snapshot.step}")
            give_weights(session, snapshot)
        report = session.compare(inputs[0] if len(inputs) == 1 else list(inputs), batch_path)
        progress.stage("differentiating the run's loss on both sides")
        grads = backward_and_compare(session.pool, session.pairs, list(inputs), [], session.tolerances,
                                     options.timeouts.call, projected=list(snapshot.output_grads))
        report = replace(report, layers=tuple(replace(layer, grad=grads.get(layer.name)) for layer in report.layers))
        if diagnose and report.exit_code != 0:
            from kdiff.diagnosis.repair import diagnose as run_diagnosis

            found = run_diagnosis(session, inputs[0] if len(inputs) == 1 else list(inputs), report,
                                  session.tolerances, progress)
            report = replace(report, findings=found.findings, unexplained=found.unexplained, repaired=found.repaired)
    return report


def give_weights(session: DiffSession, snapshot: Snapshot) -> None:
    """Every layer of side B (the reference) gets the snapshot's weights of its paired layer."""
    index = {layer["name"]: i for i, layer in enumerate(snapshot.layers)}
    for pair in session.pairs:
        if pair.a is not None and pair.b is not None and snapshot.layers[index[pair.a["name"]]]["weights"]:
            session.clients["b"].set_weights(pair.b["name"], [w for _, w in snapshot.weights(index[pair.a["name"]])])


def require_same_batch(a: Snapshot, b: Snapshot) -> None:
    same = len(a.inputs) == len(b.inputs) and all(x.shape == y.shape and np.array_equal(x, y)
                                                  for x, y in zip(a.inputs, b.inputs))
    if not same:
        raise InputError("attach-batches-differ", f"the two runs trained on different batches at steps {a.step} and "
                         f"{b.step}, so their layer outputs cannot be compared",
                         "feed both runs the same data in the same order (same seed, no shuffling differences)")
