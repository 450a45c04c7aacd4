"""One forward diff: start both workers, load the model on each, feed the same sample, and
compare every layer's output as the two streams of results arrive."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kdiff.alignment import LayerPair, align_layers
from kdiff.dump import NpzWriter
from kdiff.environments import backend_spec, env_for, ensure_env, kdiff_home
from kdiff.element_maps import find_element_map
from kdiff.errors import InputError, UsageError, WorkerFailure
from kdiff.preflight import writable_folder
from kdiff.gradients import PROJECTION, GradientComparison, NamedLoss, backward_and_compare, output_layers
from kdiff.isolation import isolate_layers
from kdiff.layout_client import LayoutClient
from kdiff.layouts import LayoutBridge, layout_bridge
from kdiff.metrics import LayerMetrics, Tolerance
from kdiff.tolerances import Tolerances, as_tolerances, derive, judge_layer
from kdiff.streams import stream_pairs
from kdiff.model_checks import sample_warnings
from kdiff.model_files import inspect_model, load_labels, load_sample
from kdiff.report import DIVERGED, MATCH, ONLY_A, ONLY_B, PROPAGATED, BackendInfo, DiffReport, LayerResult
from kdiff.worker_calls import SideClient
from kdiff.workers import Timeouts, WorkerPool


@dataclass(frozen=True)
class Side:
    name: str                  # "a" or "b"
    backend: str
    model: str
    weights: str | None = None
    python: str | None = None  # a user's interpreter instead of kdiff's environment
    worker_module: str | None = None  # tests only: a stand-in worker class (see tests/fake_worker.py)
    worker_options: dict = field(default_factory=dict)
    layout: str | None = None  # build the model in this memory layout (channels_first/channels_last): --b-layout


@dataclass(frozen=True)
class DiffOptions:
    tolerance: Tolerance = Tolerance()  # every layer's, unless derived_tolerances
    derived_tolerances: bool = False  # derive each layer's tolerance from its dtype and arithmetic (kdiff.tolerances)
    custom_objects: str | None = None
    trust_lambda_bytecode: bool = False
    dump_dir: str | None = None
    timeouts: Timeouts = Timeouts()
    write_fixed: str | None = None   # a folder for side B's model with every proven fix applied
    gradients: bool = True           # also compare every layer's gradients (kdiff.gradients)
    isolate: bool = False            # also run each of side B's layers alone on side A's inputs (kdiff.isolation)
    noise_floor: bool = True         # first run each side twice on the same input: does it agree with itself?
    loss: str | None = None          # differentiate this Keras loss on `labels` instead of a projection
    labels: tuple[str, ...] = ()     # .npy files, one per model output


class Progress:
    """What a diff reports while it runs; the UI subclasses it."""

    def stage(self, text: str) -> None: ...
    def log(self, text: str) -> None: ...
    def layer_done(self, done: int, total: int) -> None: ...


class DiffSession:
    """Both workers started and the model loaded on each; ``compare`` may then run many times."""

    def __init__(self, a: Side, b: Side, options: DiffOptions = DiffOptions(), progress: Progress = Progress()):
        self.sides = (a, b)
        self.options = options
        self.progress = progress
        self.models = {side.name: inspect_model(side.model, side.weights) for side in self.sides}
        # Every side's backend and environment is known to be valid before any is built.
        for side in self.sides:
            if side.worker_module is None:
                backend_spec(side.backend)
        self.envs = {side.name: "" if side.python else env_for(side.backend, self.models[side.name].keras_major)
                     for side in self.sides}
        self.pythons: dict[str, str] = {}
        self.pool: WorkerPool | None = None
        self.weight_maps: dict[str, list] = {}  # side A's layer -> per weight, how side B reorders it
        self.bridge = LayoutBridge()            # how side B's arrays are moved to side A's layout (kdiff.layouts)
        self.tolerances = Tolerances.from_user(options.tolerance)  # per layer once derived (start)
        self.named_loss: NamedLoss | None = None  # the loss the backward diff differentiates (else a projection)
        self.input_warnings: list[str] = list(dict.fromkeys(
            warning for side in self.sides for warning in self.models[side.name].warnings))

    def __enter__(self) -> "DiffSession":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        a, b = self.sides
        for side in self.sides:
            if side.python:
                self.pythons[side.name] = side.python
            else:
                self.progress.stage(f"environment {self.envs[side.name]}")
                self.pythons[side.name] = str(ensure_env(self.envs[side.name], self.progress.log))
        self.pool = pool = WorkerPool(self.options.timeouts)
        self.progress.stage(f"starting workers: {a.backend} and {b.backend}")
        for side in self.sides:
            layout = {"layout": side.layout} if side.layout else {}
            pool.spawn(side.name, side.backend, self.pythons[side.name],
                       {**_worker_options(side.backend), **layout, **side.worker_options}, side.worker_module)
        self.hellos = {side.name: pool.wait_hello(side.name) for side in self.sides}
        self.progress.stage("loading the model on both sides")
        loads = {side.name: pool.send(side.name, "load", _load_args(side, self.options)) for side in self.sides}
        described = _collect_replies(pool, loads, self.options.timeouts.call)
        a_layout, b_layout = self.models["a"].data_format, b.layout or self.models["b"].data_format
        self.pairs = align_layers(described["a"]["layers"], described["b"]["layers"],
                                  a_layout if a_layout and b_layout and a_layout != b_layout else "")
        self.a_layers = {layer["name"]: layer for layer in described["a"]["layers"]}
        self.b_layers = {layer["name"]: layer for layer in described["b"]["layers"]}
        if self.options.derived_tolerances:
            self.tolerances = derive(self.pairs, described["a"].get("inputs") or [])
        self.clients = {side.name: SideClient(pool, side.name) for side in self.sides}
        self.bridge = layout_bridge(self.pairs, self.models["a"], self.models["b"], b.layout,
                                    described["a"].get("inputs") or [], described["b"].get("inputs") or [])
        if self.bridge.active:  # the diagnosis and isolation then see side B in side A's layout
            self.clients["b"] = LayoutClient(self.clients["b"], self.bridge,
                                             {name: list(layer.get("inbound", ())) for name, layer in self.b_layers.items()})
        outputs = len(output_layers(self.a_layers))
        if self.named_loss is not None and len(self.named_loss.labels) != outputs:
            raise InputError("labels-count", f"the loss {self.named_loss.name!r} needs one label file per model "
                             f"output: the model has {outputs}, {len(self.named_loss.labels)} given",
                             "pass --labels once per output, in the order of the model's outputs")

    def pair_of(self, a_name: str) -> LayerPair | None:
        """The pair holding side A's layer of that name."""
        return next((pair for pair in self.pairs if pair.a is not None and pair.a["name"] == a_name), None)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def load_sample(self, sample_path: str) -> np.ndarray:
        """The sample, checked; and the labels of a named loss, checked against it and the model."""
        sample = load_sample(sample_path, self.models["a"])
        self.input_warnings += sample_warnings(sample, self.models["a"].integer_input, Path(sample_path).name)
        for warning in self.input_warnings:
            self.progress.log(f"warning: {warning}")
        if self.options.loss is not None:
            self.named_loss = NamedLoss(self.options.loss, tuple(load_labels(list(self.options.labels),
                                                                             sample.shape[0])),
                                        tuple(self.options.labels))
        return sample

    def compare(self, sample: np.ndarray | list, sample_path: str = "", gradients: bool | None = None,
                noise_floor: bool | None = None) -> DiffReport:
        """Forward diff of every layer; with ``gradients`` the backward diff too, and with ``noise_floor``
        a self-check of each side first (both default to the session's options). ``sample`` is the
        model's input, or a list of them for a model with several."""
        run_noise_floor = self.options.noise_floor if noise_floor is None else noise_floor
        noise = self.noise_floor(sample) if run_noise_floor else {}
        want_gradients = self.options.gradients if gradients is None else gradients
        inputs = sample if isinstance(sample, list) else [sample]
        declared = self._declared_output_shapes(inputs[0].shape[0]) if want_gradients else None
        fused = None
        if declared is not None:  # the projections are known before the forward pass: one pass on each side
            fused = GradientComparison(self.pairs, sample, declared, self.tolerances, self.weight_maps, self.bridge,
                                       self.named_loss)
            self.progress.stage("running the sample through both models and differentiating them")
        else:
            self.progress.stage("running the sample through both models")
        used: dict[str, Tolerance] = {}
        metrics, shapes = _forward_and_compare(self.pool, self.pairs, sample, self.options, self.progress,
                                               self.bridge, self.tolerances, used, fused)
        isolated = {}
        if self.options.isolate:
            self.progress.stage("running each of side B's layers alone on side A's inputs")
            isolated = isolate_layers(self.pairs, self.clients["a"], self.clients["b"], self.tolerances,
                                      self.progress)
        grads, notes = self._gradients(sample, shapes, fused, declared) if want_gradients else ({}, [])
        infos = self.backend_infos()
        if any(pair.aligned_by == "order" for pair in self.pairs):
            notes.append("some layers have different names on the two sides and were paired by order and shape")
        return DiffReport(
            backends=infos, layers=tuple(_classify(self.pairs, metrics, shapes, grads, isolated, self.bridge,
                                                      used)),
            tolerance=self.tolerances.given,
            sample=_sample_info(sample, sample_path), notes=tuple(notes),
            noise_floor=noise, input_warnings=tuple(self.input_warnings),
            gradient_loss=(self.named_loss.to_json() if self.named_loss is not None else PROJECTION)
            if grads else None,
        )

    def backend_infos(self) -> tuple[BackendInfo, BackendInfo]:
        """What each side runs: backend, versions, device, interpreter, environment, files, layout."""
        return tuple(
            BackendInfo(side=side.name, name=side.backend, versions=self.hellos[side.name].get("versions", {}),
                        device=self.hellos[side.name].get("device", ""), python=self.pythons[side.name],
                        env=self.envs[side.name], model=side.model, weights=side.weights or "",
                        layout=(self.bridge.b_layout if side.name == "b" else self.bridge.a_layout) or "")
            for side in self.sides
        )

    def _gradients(self, sample: np.ndarray, shapes: dict, fused: GradientComparison | None,
                   declared: list[tuple] | None) -> tuple[dict, list[str]]:
        """The gradient differences and notes: those the forward_backward pass gave (``fused``), or a
        backward pass's now (the output shapes were not known in advance, or not those declared)."""
        outputs = [shapes.get(("a", name)) for name in output_layers(self.a_layers)]
        if fused is not None and fused.failure is not None:
            return {}, [f"gradients were not compared: {fused.failure}"]
        if fused is not None and [o and o[0] for o in outputs] == declared:
            return self._backward(sample, declared, fused.results), []
        b_outputs = [tuple(self.bridge.shape_to_a(name, s) for s in shapes[("b", name)])
                     if ("b", name) in shapes else None for name in output_layers(self.b_layers)]
        if None in outputs or [o[0] for o in outputs] != [o[0] for o in b_outputs if o]:
            return {}, ["gradients were not compared: the two models' outputs differ in shape"]
        self.progress.stage("differentiating both models")
        try:
            return self._backward(sample, [o[0] for o in outputs]), []
        except WorkerFailure as failure:
            if not self.pool.all_alive():
                raise
            # the framework could not differentiate this model; the forward diff still stands
            return {}, [f"gradients were not compared: {failure.message}"]

    def _declared_output_shapes(self, batch: int) -> list[tuple] | None:
        """The model outputs' shapes for this batch as both sides declared them at load, when they are
        known in full and agree (in side A's layout): the projections can then go out with the input."""
        found = {}
        for side, layers in (("a", self.a_layers), ("b", self.b_layers)):
            found[side] = []
            for name in output_layers(layers):
                declared = (layers[name].get("output_shapes") or [None])[0]
                if not declared or any(d is None for d in declared[1:]):
                    return None
                shape = (batch, *(int(d) for d in declared[1:]))
                found[side].append(tuple(self.bridge.shape_to_a(name, shape)) if side == "b" else shape)
        return found["a"] if found["a"] == found["b"] else None

    def _backward(self, sample: np.ndarray, output_shapes: list[tuple], first: dict | None = None) -> dict:
        """The gradient differences (``first`` when a forward_backward pass already gave them); where side B
        holds a weight reordered and kdiff did not know it yet, found out and compared again."""
        grads = first if first is not None else backward_and_compare(
            self.pool, self.pairs, sample, output_shapes, self.tolerances, self.options.timeouts.call,
            self.weight_maps, self.bridge, self.named_loss)
        reordered = [layer for layer, diff in grads.items() if layer not in self.weight_maps and any(
            isinstance(m, str) and m.startswith("shapes differ") for _, m in diff.weights)]
        if not reordered:
            return grads
        self.refresh_weight_maps(reordered)  # e.g. a Keras 1 'th' kernel, held (rows, cols, in, out) by side B
        return backward_and_compare(self.pool, self.pairs, sample, output_shapes, self.tolerances,
                                    self.options.timeouts.call, self.weight_maps, self.bridge, self.named_loss)

    def refresh_weight_maps(self, a_layers: list[str]) -> None:
        """Find how side B holds each of these layers' weights: A's, reordered (or not at all)."""
        for name in a_layers:
            pair = self.pair_of(name)
            if pair is None or pair.b is None:
                continue
            a_values = [value for _, value in self.clients["a"].weights(name)]
            b_values = [value for _, value in self.clients["b"].weights(pair.b["name"])]
            maps = [find_element_map(a, b, within_zeros=True) if a.shape != b.shape or not np.array_equal(a, b) else None
                    for a, b in zip(a_values, b_values)]
            inbound = list(pair.b.get("inbound", ()))  # a Dense whose rows follow a reordered Flatten
            maps = [m if m is not None or a.shape != b.shape else self.bridge.weight_map(inbound, a, b)
                    for m, a, b in zip(maps, a_values, b_values)]
            self.weight_maps[name] = [m if m is not None and not m.is_identity else None for m in maps]

    def noise_floor(self, sample: np.ndarray | list) -> dict[str, dict[str, float]]:
        """Both sides at once run the sample (or samples, one per model input) twice; the layers where a
        side disagrees with itself."""
        self.progress.stage("running each side twice: does it agree with itself?")
        inputs = dict(zip("ab", _input_arrays(sample, self.bridge)))
        pending = {side.name: self.pool.send(side.name, "self_check", arrays=inputs[side.name])
                   for side in self.sides}
        replies = _collect_replies(self.pool, pending, self.options.timeouts.call)
        return {side: reply.get("differing", {}) for side, reply in replies.items()}


def run_diff(a: Side, b: Side, sample_path: str, options: DiffOptions = DiffOptions(),
             progress: Progress = Progress(), diagnose: bool = True) -> DiffReport:
    """Compare; where the models diverge, name and prove the causes (kdiff.diagnosis); and with
    ``options.write_fixed``, write side B's repaired model and prove that it matches."""
    session = DiffSession(a, b, options, progress)
    sample = session.load_sample(sample_path)  # a bad sample fails before anything starts
    with session:
        report = session.compare(sample, sample_path)
        if diagnose and session.bridge.moved_inputs and not session.bridge.built:
            from kdiff.diagnosis.input_layout import prove_input_layout

            report = replace(report, findings=prove_input_layout(session, session.tolerances))
        if diagnose and report.exit_code != 0:
            from kdiff.diagnosis.repair import diagnose as run_diagnosis

            found = run_diagnosis(session, sample, report, session.tolerances, progress)
            report = replace(report, findings=report.findings + found.findings, unexplained=found.unexplained,
                             repaired=found.repaired, notes=report.notes + found.not_checked)
        final = report.repaired or report
        if options.write_fixed is None:
            return report
        if final.exit_code != 0:
            return replace(report, written=WrittenRepair((), False, "the models still diverge after every proven "
                                                         "fix, so no repaired model was written"))
        progress.stage(f"writing side B's repaired model to {options.write_fixed}")
        files = tuple(session.clients["b"].save(str(Path(options.write_fixed).resolve())))
    return replace(report, written=_check_written(a, b, files, sample_path, options, progress))


@dataclass(frozen=True)
class WrittenRepair:
    files: tuple
    verified: bool     # the written files, loaded afresh, reproduce side A on every layer
    message: str

    def to_json(self) -> dict:
        return {"files": list(self.files), "verified": self.verified, "message": self.message}


def _check_written(a: Side, b: Side, files: tuple, sample_path: str, options: DiffOptions,
                   progress: Progress) -> WrittenRepair:
    """Load what was written in a fresh worker, as a user would, and compare it with side A."""
    model = files[0]
    weights = files[1] if model.endswith(".json") else None
    progress.stage("checking the written model against side A")
    # the written model states its layout itself: it is loaded as written, fed the sample in that layout
    check = run_diff(a, replace(b, model=model, weights=weights, layout=None), sample_path,
                     # the verdict rests on the forward diff alone: no noise floor, no backward pass
                     replace(options, write_fixed=None, dump_dir=None, gradients=False, noise_floor=False),
                     progress, diagnose=False)
    if check.exit_code == 0:
        return WrittenRepair(files, True, f"loaded afresh in {b.backend}, the written model matches "
                                          f"{a.backend} on all {len(check.layers)} layers")
    first = check.first_divergence
    where = f"first divergence at {first[1].name}" if first else "layers differ"
    return WrittenRepair(files, False, f"the written model does not reproduce {a.backend}: {where}")


def _load_args(side: Side, options: DiffOptions) -> dict:
    return {
        "model": str(Path(side.model).resolve()),
        "weights": str(Path(side.weights).resolve()) if side.weights else None,
        "custom_objects": str(Path(options.custom_objects).resolve()) if options.custom_objects else None,
        "trust_lambda_bytecode": options.trust_lambda_bytecode,
    }


def _worker_options(backend: str) -> dict:
    if backend != "theano":
        return {}
    compiledir = kdiff_home() / "theano-compiledir"  # Theano compiles its ops into it: it must be writable
    try:
        writable_folder(compiledir, "Theano's compile folder")
        compiledir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("kdiff-home-unwritable", f"Theano's compile folder {compiledir} cannot be made "
                         f"({exc.strerror or exc}) (in KDIFF_HOME)",
                         "make that folder writable, or point KDIFF_HOME at a writable folder with free space") from exc
    except UsageError as exc:
        raise InputError("kdiff-home-unwritable", f"{exc.message} (in KDIFF_HOME)",
                         "make that folder writable, or point KDIFF_HOME at a writable folder with free space") from exc
    return {"compiledir": str(compiledir)}


def _collect_replies(pool: WorkerPool, pending: dict[str, int], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    replies = {}
    waiting = dict(pending)
    while waiting:
        side, header, _ = pool.receive_any(waiting, deadline)
        if header.get("type") != "reply":
            raise WorkerFailure(side, pool.workers[side].backend, pool.workers[side].last_command,
                                f"sent a '{header.get('type')}' message where a reply was due")
        replies[side] = header.get("result") or {}
        del waiting[side]
    return replies


def _forward_and_compare(pool: WorkerPool, pairs: list[LayerPair], sample: np.ndarray | list, options: DiffOptions,
                         progress: Progress, bridge: LayoutBridge = LayoutBridge(),
                         tolerances: Tolerances | None = None, used: dict | None = None,
                         gradients: GradientComparison | None = None) -> tuple[dict, dict]:
    """Layer metrics keyed by A's layer name, and every layer's output shapes by (side, name) as each side
    gave them; ``sample`` is the model's input, or a list of them for a model with several. Side B's
    outputs are moved to side A's layout before they are compared (``bridge``, single inputs only);
    the dump holds them as B's worker gave them. Each layer is judged by its forward rule in ``tolerances``
    (by default ``options.tolerance`` for all); ``used`` receives the tolerance each layer was judged by.

    With ``gradients``, both sides run forward and backward in one call, from one pass of the model
    where their framework allows ('forward_backward'), and the gradients are compared into
    ``gradients.results`` as they arrive; a side that cannot differentiate the model leaves the
    forward diff standing and its message in ``gradients.failure``."""
    tolerances = as_tolerances(options.tolerance) if tolerances is None else tolerances
    used = {} if used is None else used
    dumps = {side: NpzWriter(Path(options.dump_dir) / f"{side}.npz") for side in "ab"} if options.dump_dir else {}
    metrics: dict[str, LayerMetrics | str] = {}
    shapes: dict[tuple[str, str], tuple] = {}
    total = sum(1 for pair in pairs if pair.a is not None and pair.b is not None)

    def on_part(side: str, header: dict, arrays: dict) -> list:
        layer = header.get("layer")
        outputs = [arrays[key] for key in sorted(arrays, key=int)]
        shapes[(side, layer)] = tuple(tuple(out.shape) for out in outputs)
        if side in dumps:
            for i, out in enumerate(outputs):
                dumps[side].add(layer if i == 0 else f"{layer}:{i}", out)
        return bridge.to_a(layer, outputs) if side == "b" else outputs

    def on_pair(a_layer: str, a_outputs: list, b_outputs: list) -> None:
        metrics[a_layer], used[a_layer] = _compare_outputs(a_outputs, b_outputs, tolerances.forward(a_layer))
        progress.layer_done(len(metrics), total)

    def on_either_part(side: str, header: dict, arrays: dict) -> tuple:
        gradient = header.get("kind") == "gradient"
        return gradient, (gradients.on_part if gradient else on_part)(side, header, arrays)

    def on_either_pair(a_layer: str, a_kept: tuple, b_kept: tuple) -> None:
        (gradient, a_value), (_, b_value) = a_kept, b_kept
        (gradients.on_pair if gradient else on_pair)(a_layer, a_value, b_value)

    try:
        if gradients is None:
            inputs, b_inputs = _input_arrays(sample, bridge)
            stream_pairs(pool, pairs, "forward", inputs, options.timeouts.call, on_part, on_pair, b_arrays=b_inputs)
        else:
            try:
                stream_pairs(pool, pairs, "forward_backward", gradients.arrays, options.timeouts.call,
                             on_either_part, on_either_pair, b_arrays=gradients.b_arrays, args=gradients.args)
            except WorkerFailure as failure:
                if len(metrics) < total or not pool.all_alive():
                    raise
                gradients.failure = failure.message  # the framework could not differentiate this model
    finally:
        for writer in dumps.values():
            writer.close()
    return metrics, shapes


def _compare_outputs(a_out: list, b_out: list, rule) -> tuple[LayerMetrics | str, Tolerance]:
    """A layer's metrics (or why it was not compared) and the tolerance it was judged by (``rule``'s)."""
    if len(a_out) != len(b_out):
        return f"{len(a_out)} output(s) on side A, {len(b_out)} on side B", rule.on(a_out, b_out)
    if any(x.shape != y.shape for x, y in zip(a_out, b_out)):
        return "output shapes differ", rule.on(a_out, b_out)
    return judge_layer(rule, a_out, b_out)


def _classify(pairs: list[LayerPair], metrics: dict, shapes: dict, grads: dict, isolated: dict,
              bridge: LayoutBridge = LayoutBridge(), used: dict | None = None) -> list[LayerResult]:
    """Each layer's status, in order: a layer that does not match is where a divergence starts
    ('diverged') when every layer feeding it matched, else it only carries one ('propagated').
    Where the layer was also run in isolation, that decides: its own computation differs
    ('diverged') or it only receives other inputs ('propagated')."""
    status_of: dict[str, str] = {}
    results = []
    for pair in pairs:
        if pair.a is None or pair.b is None:
            present = pair.a or pair.b
            status = ONLY_A if pair.a is not None else ONLY_B
            side = "a" if pair.a is not None else "b"
            shape = shapes.get((side, present["name"]))
            results.append(LayerResult(
                name=present["name"], class_name=present["class_name"], status=status,
                a_shape=_first(shape) if side == "a" else None, b_shape=_first(shape) if side == "b" else None,
                inbound=tuple(present.get("inbound", ())),
                note=f"present on side {side.upper()} only"))
            status_of[present["name"]] = status
            continue
        name = pair.a["name"]
        outcome = metrics.get(name)
        inbound = tuple(pair.a.get("inbound", ()))
        inputs_match = all(status_of.get(source) == MATCH for source in inbound if not source.startswith("input:"))
        layer_metrics = outcome if isinstance(outcome, LayerMetrics) else None
        alone = isolated.get(name)
        if layer_metrics is not None and layer_metrics.matches:
            status = MATCH
        elif isinstance(alone, LayerMetrics):
            status = PROPAGATED if alone.matches else DIVERGED
        else:
            status = DIVERGED if inputs_match else PROPAGATED
        note = outcome if isinstance(outcome, str) else ("no output came back" if outcome is None else "")
        status_of[name] = status
        results.append(LayerResult(
            name=name, class_name=pair.a["class_name"], b_class_name=pair.b["class_name"],
            a_shape=_first(shapes.get(("a", name))), b_shape=_first(shapes.get(("b", pair.b["name"]))),
            status=status, metrics=layer_metrics, grad=grads.get(name), isolated=alone,
            b_name=pair.b["name"] if pair.b["name"] != name else "",
            aligned_by=pair.aligned_by, inbound=inbound, note=note, layout=bridge.note(pair.b["name"]),
            tolerance=(used or {}).get(name)))
    return results


def _input_arrays(sample: np.ndarray | list, bridge: LayoutBridge) -> tuple[dict, dict]:
    """The model's inputs as a forward or self_check call sends them ("0", "1", ...), for side A and for
    side B (a single input moved to B's layout by ``bridge``)."""
    if isinstance(sample, list):
        inputs = {str(i): x for i, x in enumerate(sample)}
        return inputs, inputs
    return {"0": sample}, {"0": bridge.sample_for_b(sample)}


def _sample_info(sample: np.ndarray | list, path: str) -> dict:
    """The report's account of the input: its shape and dtype, or one of each per input of a model with several."""
    if isinstance(sample, list):
        return {"path": path, "shape": [list(x.shape) for x in sample], "dtype": [x.dtype.str for x in sample]}
    return {"path": path, "shape": list(sample.shape), "dtype": sample.dtype.str}


def _first(shapes: tuple | None) -> tuple | None:
    return shapes[0] if shapes else None
