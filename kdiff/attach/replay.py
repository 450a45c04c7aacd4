"""Replaying snapshots: a live run's snapshot against a reference worker that loads the
snapshot's model, or two runs' snapshots against each other, through the same comparison,
classification and diagnosis as the offline command (kdiff.diff.DiffSession). The snapshot
side is a replay worker (kdiff.attach.replay_worker) serving what the probe captured.

Gradients are those of the run's own training loss: both sides differentiate
``sum_k sum(output_k * P_k)`` with ``P_k`` the run's d loss / d output k, which by the chain rule
gives the training loss's gradient for every layer output and weight.

A reference worker loads the snapshot's model file for the architecture and is then given the
snapshot's weights, layer by layer (the cached file may hold an earlier snapshot's). A model with
several inputs is compared layer by layer here (the offline comparison takes one sample); the
diagnosis then does not run (it re-runs the offline comparison, which takes one input)."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from kdiff.alignment import LayerPair
from kdiff.attach.snapshot import Snapshot
from kdiff.diff import DiffOptions, DiffSession, Progress, Side, _classify, _forward_and_compare
from kdiff.errors import InputError
from kdiff.gradients import GradientDiff, gradient_tolerance
from kdiff.metrics import LayerMetrics, Tolerance, combine, compare_arrays
from kdiff.report import DiffReport
from kdiff.streams import stream_pairs
from kdiff.workers import WorkerPool

REPLAY_WORKER = "kdiff.attach.replay_worker"


def live_side(name: str, snapshot: Snapshot, folder: Path, label: str = "live") -> Side:
    """A side served by the replay worker, in this interpreter (it needs numpy and pyzmq only)."""
    model = snapshot.write(folder)
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
        if len(inputs) == 1:
            report = session.compare(inputs[0], batch_path)
        else:
            report = compare_inputs(session, inputs, batch_path, options)
        progress.stage("differentiating the run's loss on both sides")
        grads = compare_training_gradients(session.pool, session.pairs, snapshot, options.tolerance,
                                           options.timeouts.call)
        report = replace(report, layers=tuple(replace(layer, grad=grads.get(layer.name)) for layer in report.layers))
        if diagnose and report.exit_code != 0 and len(inputs) == 1:
            from kdiff.diagnosis.repair import diagnose as run_diagnosis

            found = run_diagnosis(session, inputs[0], report, options.tolerance, progress)
            report = replace(report, findings=found.findings, unexplained=found.unexplained, repaired=found.repaired)
    return report


def give_weights(session: DiffSession, snapshot: Snapshot) -> None:
    """Every layer of side B (the reference) gets the snapshot's weights of its paired layer."""
    index = {layer["name"]: i for i, layer in enumerate(snapshot.layers)}
    for pair in session.pairs:
        if pair.a is not None and pair.b is not None and snapshot.layers[index[pair.a["name"]]]["weights"]:
            session.clients["b"].set_weights(pair.b["name"], [w for _, w in snapshot.weights(index[pair.a["name"]])])


def compare_inputs(session: DiffSession, inputs: list[np.ndarray], batch_path: str, options: DiffOptions) -> DiffReport:
    """The forward comparison of DiffSession.compare, for a model with several inputs."""
    session.progress.stage("running the batch through both models")
    metrics, shapes = _forward_and_compare(session.pool, session.pairs, inputs, options, session.progress)
    return DiffReport(backends=session.backend_infos(), layers=tuple(_classify(session.pairs, metrics, shapes, {}, {})),
                      tolerance=options.tolerance,
                      sample={"path": batch_path, "shape": [list(x.shape) for x in inputs],
                              "dtype": [x.dtype.str for x in inputs]},
                      notes=("the diagnosis does not run for a model with several inputs yet",))


def require_same_batch(a: Snapshot, b: Snapshot) -> None:
    same = len(a.inputs) == len(b.inputs) and all(x.shape == y.shape and np.array_equal(x, y)
                                                  for x, y in zip(a.inputs, b.inputs))
    if not same:
        raise InputError("attach-batches-differ", f"the two runs trained on different batches at steps {a.step} and "
                         f"{b.step}, so their layer outputs cannot be compared",
                         "feed both runs the same data in the same order (same seed, no shuffling differences)")


def compare_training_gradients(pool: WorkerPool, pairs: list[LayerPair], snapshot: Snapshot, tolerance: Tolerance,
                               timeout: float) -> dict[str, GradientDiff]:
    """Every layer's output and weight gradients of the run's loss, both sides, keyed by side A's layer name."""
    arrays = {f"x{i}": x for i, x in enumerate(snapshot.inputs)}
    arrays.update({f"p{k}": p for k, p in enumerate(snapshot.output_grads)})
    results: dict[str, GradientDiff] = {}

    def on_part(side: str, header: dict, part: dict):
        outputs = [part[key] for key in sorted((k for k in part if k.startswith("o")), key=lambda k: int(k[1:]))]
        names = header.get("weights", ())
        return outputs, [(name, part[f"w{i}"]) for i, name in enumerate(names)]

    def on_pair(a_layer: str, a_kept, b_kept) -> None:
        (a_outputs, a_weights), (b_outputs, b_weights) = a_kept, b_kept
        output = _compare_all(a_outputs, b_outputs, tolerance)
        weights = tuple((name, _compare_all([x], [y], tolerance)) for (name, x), (_, y) in zip(a_weights, b_weights))
        if len(a_weights) != len(b_weights):
            weights = tuple((name, f"{len(a_weights)} weights on side A, {len(b_weights)} on B") for name, _ in a_weights)
        results[a_layer] = GradientDiff(output, weights)

    stream_pairs(pool, pairs, "backward", arrays, timeout, on_part, on_pair)
    return results


def _compare_all(a: list, b: list, tolerance: Tolerance) -> LayerMetrics | str:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return f"shapes differ: {[x.shape for x in a]} vs {[y.shape for y in b]}"
    return combine([compare_arrays(x, y, gradient_tolerance(tolerance, x, y)) for x, y in zip(a, b)])
