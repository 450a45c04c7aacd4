"""Running the training steps on both sides and comparing them (``kdiff train``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kdiff.protocol import vocabulary as v
from kdiff.protocol.vocabulary import pack, unpack, unpack_slots

from kdiff.progress import Progress
from kdiff.session import DiffOptions, DiffSession, Side
from kdiff.diagnosis.model import ErrorSize
from kdiff.errors import InputError
from kdiff.gradients import gradient_tolerance
from kdiff.metrics import LayerMetrics, combine, compare_arrays
from kdiff.report import BackendInfo
from kdiff.streams import stream_pairs
from kdiff.train import explain, moving_statistics
from kdiff.train.fitting import WeightStep, fit_step, formula_from_probe, needs_probe, probe_epsilon
from kdiff.train.pairing import pair_weights
from kdiff.train.report import LayerStep, StepRecord, TrainReport, WeightError

STOCHASTIC_NOTE = ("stochastic layers off: every step runs in inference mode on both sides (Dropout and noise "
                   "layers pass their input through; BatchNormalization normalises with its moving statistics); "
                   "each step then updates the moving statistics with each BatchNormalization layer's own "
                   "training-mode rule, from its input for the batch")
SHARED_GRADIENT_NOTE = ("side B's optimizer is given side A's gradients (mapped to B's layout) wherever the weights "
                        "pair, so the updates compare what the optimizers do; both sides' own gradients are compared "
                        "as well")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainOptions:
    optimizers: tuple[OptimizerSpec, OptimizerSpec]   # side A's, side B's
    loss: str
    steps: int
    batch_size: int | None       # None: all of X, up to 32 samples
    diff: DiffOptions = DiffOptions(gradients=False)


class TrainProgress(Progress):
    """What a training comparison reports while it runs; the UI subclasses it."""

    def step_done(self, record: StepRecord, total: int) -> None: ...


@dataclass
class _SideStep:
    """One side's arrays from one step, by position among its trainable weights."""
    iterations: int
    gradients: list
    updates: list
    before: dict
    after: dict
    statistics_before: list = field(default_factory=list)   # by position among the side's moving statistics
    statistics_after: list = field(default_factory=list)
    statistics_batch: list = field(default_factory=list)
    statistics_samples: list = field(default_factory=list)

    @property
    def statistic_updates(self) -> list:
        return [after - before for before, after in zip(self.statistics_before, self.statistics_after)]

    def statistic_step(self, index: int) -> moving_statistics.StatisticStep:
        return moving_statistics.StatisticStep(self.statistics_before[index], self.statistics_after[index],
                                               self.statistics_batch[index], self.statistics_samples[index])

    def weight_steps(self) -> list[WeightStep]:
        return [WeightStep(g, {k: v[i] for k, v in self.before.items()}, {k: v[i] for k, v in self.after.items()}, u)
                for i, (g, u) in enumerate(zip(self.gradients, self.updates))]


def load_targets(y_path: str, samples: int, batch_size: int) -> np.ndarray:
    """Y, checked against X's sample count and the batch size (X is checked like a diff's sample)."""
    try:
        y = np.load(y_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError("bad-targets", f"cannot read Y from {y_path} without unpickling: {exc}",
                         "save the targets with numpy.save (a numeric array, batch first)") from exc
    if y.dtype.kind not in "biuf" or y.ndim == 0:
        raise InputError("bad-targets", f"Y ({y_path}) holds {y.dtype} of shape {y.shape}, not a batch of numbers",
                         "save a numeric array, batch first")
    if len(y) != samples:
        raise InputError("bad-targets", f"X has {samples} samples but Y has {len(y)}", "give one target per sample")
    if not 1 <= batch_size <= samples:
        raise InputError("bad-batch-size", f"batch size {batch_size} does not fit {samples} samples",
                         f"choose a batch size from 1 to {samples}")
    return y


def run_training(a: Side, b: Side, x_path: str, y_path: str, options: TrainOptions,
                 progress: TrainProgress = TrainProgress()) -> TrainReport:
    if options.steps < 1:
        raise InputError("bad-steps", f"--steps must be at least 1, not {options.steps}", "e.g. --steps 5")
    session = DiffSession(a, b, options.diff, progress)
    x = session.load_sample(x_path)  # bad data fails before anything starts
    if options.batch_size is None:
        options = replace(options, batch_size=min(32, len(x)))
    y = load_targets(y_path, len(x), options.batch_size)
    with session:
        return _Run(session, x, y, options, progress).run()


class _Run:
    def __init__(self, session: DiffSession, x: np.ndarray, y: np.ndarray, options: TrainOptions,
                 progress: TrainProgress):
        self.session, self.x, self.y, self.options, self.progress = session, x, y, options, progress
        self.tolerance = options.diff.tolerance
        self.pool = session.pool

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rows = (step * self.options.batch_size + np.arange(self.options.batch_size)) % len(self.x)
        return self.x[rows], self.y[rows]

    def run(self) -> TrainReport:
        repairs, forward_left = self._repair_forward()
        findings, notes = list(repairs), [STOCHASTIC_NOTE, SHARED_GRADIENT_NOTE]
        described = {}
        for side, spec in zip("ab", self.options.optimizers):
            described[side], _ = self.pool.call(side, "compile_optimizer",
                                                {"optimizer": spec.name, "config": spec.config,
                                                 "loss": self.options.loss})
        self.pairs, unpaired = pair_weights(self.session, described["a"]["trainable"], described["b"]["trainable"])
        notes += unpaired
        self.statistics = {side: described[side].get("statistics", []) for side in "ab"}
        self.statistic_pairs, unpaired = pair_weights(self.session, self.statistics["a"], self.statistics["b"],
                                                      "moving statistic")
        notes += unpaired
        if not self.pairs:
            raise InputError("no-paired-weights", "no trainable weight of side B is side A's weight",
                             "the two models must start from the same weights; see the forward diff")
        records, first, layers, fits, statistics_fits = [], None, (), {}, {}
        for step in range(self.options.steps):
            x, y = self.batch(step)
            self.progress.stage(f"step {step}")
            losses, layer_steps = self._gradients(x, y)
            side_a = self._optimizer_step("a", None)
            side_b = self._optimizer_step("b", side_a)
            errors = self._update_errors(side_a, side_b)
            diverged = tuple(error.weight for error in errors if not error.metrics.matches)
            worst = max(errors, key=lambda error: _badness(error.metrics), default=None)
            record = StepRecord(step, losses["a"], losses["b"], worst, diverged)
            records.append(record)
            self.progress.step_done(record, self.options.steps)
            if diverged and first is None:
                first = (step, diverged[0])
                layers = tuple(self._with_weights(layer_steps, side_a, side_b))
                fits, statistics_fits, found, explained = self._explain(step, first[1], described, side_a, side_b)
                findings += found
                notes += explained
        optimizers = {side: {"optimizer": described[side]["optimizer"], "config": described[side]["config"]}
                      for side in "ab"}
        return TrainReport(_backend_infos(self.session), optimizers, self.options.loss, self.options.batch_size,
                           tuple(records), first, layers, fits, tuple(findings), tuple(notes),
                           statistics_fits=statistics_fits, forward_divergence=forward_left)

    # ---- before the first step ----------------------------------------------------------
    def _repair_forward(self) -> tuple[tuple, dict | None]:
        """The forward diagnosis's proven repairs (side B), when the models already differ at step 0; and
        the forward divergence that is left after them (None when, repaired, every layer matches)."""
        sample = self.batch(0)[0]
        report = self.session.compare(sample)
        if report.exit_code == 0:
            return (), None
        from kdiff.diagnosis.repair import diagnose

        diagnosis = diagnose(self.session, sample, report, self.session.tolerances, self.progress)
        final = diagnosis.repaired or report
        if final.exit_code == 0:
            return diagnosis.findings, None
        first = final.first_divergence
        left = {"layer": first[1].name if first else None,
                "unexplained": diagnosis.unexplained.to_json() if diagnosis.unexplained is not None else None,
                "message": ("before the first step, the models' forward passes already differ "
                            + (f"from {first[1].name} on" if first else "") + ", and no proven fix removes it: "
                            "the steps below are compared with that caveat")}
        return diagnosis.findings, left

    # ---- one step -------------------------------------------------------------------------
    def _gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
        """Both sides' losses, and each layer's activation and gradient compared."""
        losses, results = {}, {}
        layer_info = self.session.a_layers

        def on_part(side, header, arrays):
            if "loss" in header:
                losses[side] = header["loss"]
                return None
            return {prefix: unpack(arrays, prefix) for prefix in (v.OUTPUTS, v.OUTPUT_GRADIENTS, v.WEIGHT_GRADIENTS)}

        def on_pair(a_layer, a_kept, b_kept):
            weights = tuple((pair.name, {"gradient": self._compare_gradient(pair.element_map(a_kept[v.WEIGHT_GRADIENTS][pair.index]),
                                                                            b_kept[v.WEIGHT_GRADIENTS][pair.index])})
                            for pair in self.pairs if pair.layer == a_layer)
            results[a_layer] = LayerStep(a_layer, layer_info[a_layer]["class_name"],
                                         _compare_all(a_kept[v.OUTPUTS], b_kept[v.OUTPUTS],
                                                      lambda p, q: compare_arrays(p, q, self.tolerance)),
                                         _compare_all(a_kept[v.OUTPUT_GRADIENTS], b_kept[v.OUTPUT_GRADIENTS], self._compare_gradient), weights)

        def merge(cut_kept, own_kept):  # a group (kdiff.alignment): compared at its cut, with its own layer's weights
            return {**cut_kept, v.WEIGHT_GRADIENTS: own_kept[v.WEIGHT_GRADIENTS]}

        stream_pairs(self.pool, self.session.pairs, "train_gradients", {**pack([x], v.MODEL_INPUTS), **pack([y], v.LABELS)},
                     self.options.diff.timeouts.call, on_part, on_pair, merge=merge)
        return losses, results

    def _optimizer_step(self, side: str, side_a: _SideStep | None) -> _SideStep:
        arrays = {}
        if side_a is not None:  # side B applies side A's gradients
            arrays = {f"{v.WEIGHT_GRADIENTS}{pair.b_index}": pair.element_map(side_a.gradients[pair.a_index])
                      for pair in self.pairs}
        result, out = self.pool.call(side, "optimizer_step", arrays=arrays)
        updates, slots = unpack(out, v.UPDATES), result["slots"]
        return _SideStep(result["iterations"][0], unpack(out, v.APPLIED), updates,
                         unpack_slots(out, v.SLOTS_BEFORE, slots, len(updates)),
                         unpack_slots(out, v.SLOTS_AFTER, slots, len(updates)),
                         unpack(out, v.STATISTICS_BEFORE), unpack(out, v.STATISTICS_AFTER),
                         unpack(out, v.BATCH_STATISTICS), list(result.get("samples", [])))

    def _update_errors(self, side_a: _SideStep, side_b: _SideStep) -> list[WeightError]:
        """Every paired trainable weight's update, then every paired moving statistic's."""
        a_statistics, b_statistics = side_a.statistic_updates, side_b.statistic_updates
        return [WeightError(pair.name, self._compare_gradient(pair.element_map(a_updates[pair.a_index]),
                                                              b_updates[pair.b_index]))
                for pairs, a_updates, b_updates in ((self.pairs, side_a.updates, side_b.updates),
                                                    (self.statistic_pairs, a_statistics, b_statistics))
                for pair in pairs]

    def _compare_gradient(self, a: np.ndarray, b: np.ndarray) -> LayerMetrics:
        """Gradients and updates are judged against their own scale (see kdiff.gradients)."""
        return compare_arrays(a, b, gradient_tolerance(self.tolerance, a, b))

    def _with_weights(self, layer_steps: dict, side_a: _SideStep, side_b: _SideStep):
        """The layer table of a step: each weight's gradient with its update and slots added."""
        pairs = {pair.name: pair for pair in self.pairs}
        for layer in layer_steps.values():
            weights = []
            for name, parts in layer.weights:
                pair = pairs[name]
                parts = {**parts, "update": self._compare_gradient(pair.element_map(side_a.updates[pair.a_index]),
                                                                   side_b.updates[pair.b_index])}
                for kind in sorted(set(side_a.after) & set(side_b.after)):
                    parts[f"slot:{kind}"] = self._compare_gradient(pair.element_map(side_a.after[kind][pair.a_index]),
                                                                   side_b.after[kind][pair.b_index])
                weights.append((name, parts))
            a_statistics, b_statistics = side_a.statistic_updates, side_b.statistic_updates
            for pair in self.statistic_pairs:
                if pair.layer == layer.name:
                    weights.append((pair.name, {"update": self._compare_gradient(
                        pair.element_map(a_statistics[pair.a_index]), b_statistics[pair.b_index])}))
            yield replace(layer, weights=tuple(weights))

    # ---- explaining the first divergence ----------------------------------------------------
    def _explain(self, step: int, weight: str, described: dict, side_a: _SideStep, side_b: _SideStep):
        """(optimizer fits, momentum fits, findings, notes) of the first diverging step."""
        self.progress.stage(f"step {step}: solving both optimizers' updates for their settings")
        declared = {side: explain.declared_values(described[side]["config"]) for side in "ab"}
        fits = {side: fit_step(described[side]["optimizer"], data.weight_steps(), data.iterations, declared[side])
                for side, data in (("a", side_a), ("b", side_b))}
        for side, data in (("a", side_a), ("b", side_b)):
            if needs_probe(fits[side]):   # the step cannot tell epsilon's placement: re-run it with a larger one
                steps = data.weight_steps()
                epsilon = probe_epsilon(steps)
                self.progress.stage(f"step {step}: re-running side {side.upper()}'s step with epsilon={epsilon:g} "
                                    "to tell its formula")
                _, out = self.pool.call(side, "trial_step", {"overrides": {"epsilon": epsilon}, "formula": None,
                                                             "layers": {}})
                fits[side] = formula_from_probe(fits[side], steps, unpack(out, v.UPDATES), epsilon)
        found = []
        if fits["a"] is not None and fits["b"] is not None:
            found = explain.candidates(fits["a"], fits["b"], declared["a"], declared["b"])
        momentum_fits, layer_pairs = self._momentum_fits(side_a, side_b)
        found += moving_statistics.candidates(momentum_fits["a"], momentum_fits["b"], layer_pairs)
        notes = list(_variance_notes(momentum_fits, layer_pairs, found))
        statistics_fits = {side: tuple(momentum_fits[side].values()) for side in "ab"}
        # a moving variance that follows another batch variance (unbiased, +ε) cannot match by a
        # setting kdiff re-runs: the proofs judge the other updates (the finding names the forms)
        other_form = {layer for layer, b_layer in layer_pairs.items()
                      if layer in momentum_fits["a"] and b_layer in momentum_fits["b"]
                      and momentum_fits["a"][layer].variance_form != momentum_fits["b"][b_layer].variance_form}
        judged = [pair for pair in self.statistic_pairs
                  if not (pair.layer in other_form and self.statistics["a"][pair.a_index]["kind"] == "variance")]

        def update_error(b_updates):
            trainable, statistics = b_updates
            errors = [explain.update_arrays_error(self.pairs, side_a.updates, trainable, self._compare_gradient),
                      explain.update_arrays_error(judged, side_a.statistic_updates, statistics,
                                                  self._compare_gradient)]
            return (ErrorSize(max(e.max_abs for e, _ in errors), max(e.max_rel for e, _ in errors)),
                    all(matches for _, matches in errors))

        def trial(overrides, formula, layers):
            what = {**overrides, **({"formula": formula} if formula else {}), **({"layers": layers} if layers else {})}
            self.progress.stage(f"step {step}: re-running side B's step with {what}")
            _, out = self.pool.call("b", "trial_step", {"overrides": overrides, "formula": formula, "layers": layers})
            return unpack(out, v.UPDATES), unpack(out, v.STATISTICS_UPDATES)

        before, _ = update_error((side_b.updates, side_b.statistic_updates))
        sides = tuple(side.backend for side in self.session.sides)
        return fits, statistics_fits, explain.prove(found, trial, update_error, before, weight, step, sides,
                                                    described["b"]["optimizer"]), notes

    def _momentum_fits(self, side_a: _SideStep, side_b: _SideStep) -> tuple[dict, dict]:
        """Each side's solved BatchNormalization momentum per layer ({side: {layer: MomentumFit}}),
        and side A's layer -> side B's for the layers whose moving mean pairs."""
        fits, layer_pairs = {"a": {}, "b": {}}, {}
        for pair in self.statistic_pairs:
            if self.statistics["a"][pair.a_index]["kind"] != "mean":
                continue
            b_layer = self.statistics["b"][pair.b_index]["layer"]
            layer_pairs[pair.layer] = b_layer
            for side, data, layer, index in (("a", side_a, pair.layer, pair.a_index), ("b", side_b, b_layer, pair.b_index)):
                described = self.statistics[side]
                variance = next((i for i, entry in enumerate(described)
                                 if entry["layer"] == layer and entry["kind"] == "variance"), None)
                fit = moving_statistics.fit_momentum(
                    layer, data.statistic_step(index), data.statistic_step(variance) if variance is not None else None,
                    described[index].get("epsilon", 1e-3), described[index].get("momentum"))
                if fit is not None:
                    fits[side][layer] = fit
        return fits, layer_pairs


def _variance_notes(momentum_fits: dict, layer_pairs: dict, found: list):
    """A note per layer whose moving variances moved towards different batch variances while
    the momenta agree (no momentum finding names it)."""
    named = {candidate.layer for candidate in found if candidate.cause == moving_statistics.CAUSE}
    for a_layer, b_layer in layer_pairs.items():
        fit_a, fit_b = momentum_fits["a"].get(a_layer), momentum_fits["b"].get(b_layer)
        if fit_a and fit_b and a_layer not in named and fit_a.variance_form != fit_b.variance_form:
            yield (f"{a_layer}: the moving variance moved towards the {fit_a.variance_form} on side A and the "
                   f"{fit_b.variance_form} on side B (the momenta agree: {fit_a.momentum:.6g}, {fit_b.momentum:.6g})")


def _compare_all(a: list, b: list, compare) -> LayerMetrics | str:
    if len(a) != len(b):
        return f"{len(a)} array(s) on side A, {len(b)} on side B"
    if any(p.shape != q.shape for p, q in zip(a, b)):
        return "shapes differ"
    return combine([compare(p, q) for p, q in zip(a, b)])


def _badness(metrics: LayerMetrics) -> tuple:
    """Worse first by the share of elements out of tolerance, then by the largest relative error."""
    return metrics.out_of_tolerance, metrics.max_rel


def _backend_infos(session: DiffSession) -> tuple[BackendInfo, BackendInfo]:
    return tuple(BackendInfo(side=side.name, name=side.backend, versions=session.hellos[side.name].get("versions", {}),
                             device=session.hellos[side.name].get("device", ""), python=session.pythons[side.name],
                             env=session.envs[side.name], model=side.model, weights=side.weights or "")
                 for side in session.sides)
