"""The repair loop: diagnose the first divergence, keep the proven fix on side B, compare again."""
from __future__ import annotations

from dataclasses import dataclass, replace

from kdiff.diagnosis import evidence as evidence_mod
from kdiff.diagnosis.model import ErrorSize, Finding, Unexplained
from kdiff.diagnosis.mask_dropped import prove_mask_dropped
from kdiff.diagnosis.non_finite import prove_non_finite
from kdiff.diagnosis.rules import RULES
from kdiff.bug_log import one_line, write_bug_log
from kdiff.errors import InputError, KdiffError
from kdiff.isolation import isolate_layers
from kdiff.metrics import LayerMetrics, Tolerance
from kdiff.tolerances import Tolerances
from kdiff.report import MATCH, DiffReport
from kdiff.worker_calls import SideClient

STOCHASTIC_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                      "GaussianDropout", "AlphaDropout"}
MAX_ROUNDS = 64
MAX_PAIRED_TRIES = 64  # layer re-runs spent on pairs of candidates for one layer


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    unexplained: Unexplained | None
    repaired: DiffReport | None     # the comparison after every proven fix; None when none was applied
    not_checked: tuple[str, ...] = ()  # "rule X could not be checked on layer Y: ..." (kdiff's own failures)


class NotChecked:
    """Failures of kdiff's own inside the diagnosis: each ends the check it was in (a rule on a layer,
    or a layer's diagnosis), never the run; its traceback goes to a log the note names."""

    def __init__(self):
        self.notes: list[str] = []

    def add(self, what: str, exc: Exception) -> None:
        self.notes.append(f"{what} could not be checked: {one_line(exc)} (a bug of kdiff's own; the traceback is "
                          f"in {write_bug_log(exc)})")


def diagnose(session, sample, report: DiffReport, tolerance: Tolerance | Tolerances, progress) -> Diagnosis:
    """Findings for every divergence that a rule can prove, in the order they were found. A layer
    re-run alone is judged by its own rule in ``tolerance`` (kdiff.tolerances), or by a single Tolerance."""
    if report.exit_code == 0:
        return Diagnosis((), None, None)
    a, b = session.clients["a"], session.clients["b"]
    progress.stage("checking that each side agrees with itself")
    noisy = _self_disagreement(session, sample, report.noise_floor)
    if noisy:  # a comparison with a side that disagrees with itself proves nothing further
        return Diagnosis(tuple(noisy), None, None)
    findings: list[Finding] = []
    failed = NotChecked()
    current = report
    for _ in range(MAX_ROUNDS):
        first = current.first_divergence
        if first is None:
            break
        layer = first[1]
        progress.stage(f"diagnosing {layer.name}")
        pair = session.pair_of(layer.name)
        if pair is None or pair.b is None:
            break
        try:
            masked = prove_mask_dropped(session, layer, sample)
            if masked is not None:  # proven on the whole model, which is compared again with it
                finding, repaired = masked
                findings.extend(_with_explains(current, repaired, {layer.name: [finding]}))
                current = repaired
                continue
            evidence = evidence_mod.gather(pair, session.a_layers, a, b, b_framework(session))
            non_finite = prove_non_finite(a, b, evidence, tolerance)
            if non_finite is not None:  # nothing after it can be compared meaningfully: the input must change
                return Diagnosis((*findings, non_finite), None, current if findings else None, tuple(failed.notes))
            proven = _prove(b, evidence, tolerance, failed)
            if not proven:
                b_inputs = [b.outputs([s])[s][0] for s in _b_sources(session, pair)]
                unexplained = evidence_mod.describe_unexplained(b, evidence, tolerance, b_inputs)
                return Diagnosis(tuple(findings), unexplained, current if findings else None, tuple(failed.notes))
        except KdiffError:
            raise  # a worker's failure, or the user's input: the run's own error
        except Exception as exc:  # noqa: BLE001 -- kdiff's own failure ends this layer's diagnosis, not the run
            failed.add(f"the divergence at {layer.name}", exc)
            break
        session.refresh_weight_maps([layer.name])  # a reordering fix reorders the layer's gradients too
        round_proven = {layer.name: proven, **_prove_further(session, current, layer.name, tolerance, failed,
                                                             progress)}
        progress.stage(f"{sum(len(p) for p in round_proven.values())} fix(es) proven at {', '.join(round_proven)}; "
                       "comparing again with them")
        repaired = session.compare(sample, gradients=False, noise_floor=False)
        if repaired.first_divergence is not None and repaired.first_divergence[1].name == layer.name:
            # the fix holds alone but not in the model: keep what was proven, and say what is left
            findings.extend(finding for proofs in round_proven.values() for finding in proofs)
            return Diagnosis(tuple(findings), _left_after_fix(repaired, layer.name, proven), repaired,
                             tuple(failed.notes))
        findings.extend(_with_explains(current, repaired, round_proven))
        current = repaired
    if findings and session.options.gradients:
        progress.stage("comparing gradients with every proven fix applied")
        current = session.compare(sample, noise_floor=False)
    return Diagnosis(tuple(findings), None, current if findings else None, tuple(failed.notes))


def _prove_further(session, current: DiffReport, first: str, tolerance: Tolerance | Tolerances,
                   failed: NotChecked, progress) -> dict[str, list[Finding]]:
    """One pass for many faults: every later layer that does not match is run alone on side A's inputs, and
    each that differs on its own is diagnosed now, its proven fix kept on side B, so that one comparison of
    the whole model checks them all (instead of one per fault). By layer, in order."""
    after_first = False
    suspects = []
    for result in current.layers:
        after_first = after_first or result.name == first
        pair = session.pair_of(result.name)
        if after_first and result.name != first and result.status != MATCH and pair is not None and pair.b is not None:
            suspects.append(pair)
    if not suspects:
        return {}
    a, b = session.clients["a"], session.clients["b"]
    progress.stage(f"running {len(suspects)} later layer(s) of side B alone on side A's inputs")
    try:
        isolated = isolate_layers(suspects, a, b, tolerance, progress)
    except KdiffError:
        raise
    except Exception as exc:  # noqa: BLE001
        failed.add("the isolation of the later layers", exc)
        return {}
    proven: dict[str, list[Finding]] = {}
    for pair in suspects:
        own = isolated.get(pair.a["name"])
        if not isinstance(own, LayerMetrics) or own.matches:
            continue  # it differs only because its inputs do (or cannot be run alone): not its own fault
        progress.stage(f"diagnosing {pair.a['name']}")
        try:
            evidence = evidence_mod.gather(pair, session.a_layers, a, b, b_framework(session))
            if prove_non_finite(a, b, evidence, tolerance) is not None:
                continue  # (said at the first divergence it reaches)
            found = _prove(b, evidence, tolerance, failed)
        except KdiffError:
            raise
        except Exception as exc:  # noqa: BLE001
            failed.add(f"the divergence at {pair.a['name']}", exc)
            continue
        if found:
            session.refresh_weight_maps([pair.a["name"]])
            proven[pair.a["name"]] = found
    return proven


def _with_explains(before: DiffReport, after: DiffReport, proven: dict[str, list[Finding]]) -> list[Finding]:
    """The round's findings, each explaining the layers that match now and did not before: a layer is
    explained by the fix it waited for last, the latest (in topological order) of the fixed layers among
    itself and the layers it depends on, as if the fixes had been applied one at a time in that order."""
    order = {layer.name: index for index, layer in enumerate(after.layers)}
    fixed_upstream: dict[str, set] = {}
    for layer in after.layers:  # (in topological order: a layer's sources come before it)
        fixed_upstream[layer.name] = {layer.name} & proven.keys()
        for source in layer.inbound:
            fixed_upstream[layer.name] |= fixed_upstream.get(source, set())
    first = next(iter(proven))
    explained = {name: [] for name in proven}
    for was, now in zip(before.layers, after.layers):
        if was.status != MATCH and now.status == MATCH:
            owners = fixed_upstream[was.name]
            explained[max(owners, key=order.get) if owners else first].append(was.name)
    return [replace(finding, explains=tuple(explained[name])) for name, found in proven.items() for finding in found]


def _left_after_fix(repaired: DiffReport, name: str, proven: list[Finding]) -> Unexplained:
    """What still differs at a layer whose fix was proven on the layer alone, in the whole model."""
    index, layer = repaired.first_divergence
    by_name = {result.name: result for result in repaired.layers}
    input_error = max((by_name[source].metrics.max_rel for source in layer.inbound
                       if source in by_name and by_name[source].metrics is not None), default=0.0)
    m, tolerance = layer.metrics, layer.tolerance
    measured = (f"max abs {m.max_abs:.3g}, max rel {m.max_rel:.3g}" if m is not None else layer.note or "not compared")
    allowed = f" against atol {tolerance.atol:.3g}, rtol {tolerance.rtol:.3g}" if tolerance is not None else ""
    reason = (f"With the proven fix ({', '.join(f.cause for f in proven)}), {name} alone matches side A, but in the "
              f"whole model it still differs ({measured}{allowed}), while its inputs differ by max rel "
              f"{input_error:.3g}: their error amplified by this layer, or a further cause that running it alone "
              "cannot show")
    after = proven[-1].after or proven[-1].before
    return Unexplained(layer=name, class_name=layer.b_class_name or layer.class_name, isolated=after,
                       input_error=input_error, worst_positions=(), reason=reason)


def b_framework(session) -> tuple[str, dict]:
    """Side B's backend and the versions its worker reported (for the rules about framework bugs)."""
    return session.sides[1].backend, session.hellos["b"].get("versions", {})


def _prove(b: SideClient, evidence, tolerance: Tolerance | Tolerances, failed: NotChecked) -> list[Finding]:
    """The fix that brings side B's layer within tolerance, kept on side B, as findings: one
    candidate alone, or else (two faults in one layer, such as a Theano kernel that is both
    flipped and padded the other way) a weights-only candidate of one rule followed by a
    candidate of another rule proposed for the layer so changed. Empty when nothing does."""
    before = evidence_mod.isolated_error(b, evidence, tolerance)
    if before.matches:
        return []  # run alone, the layer agrees: re-running it cannot tell a fix from no fix
    before_size = ErrorSize(before.max_abs, before.max_rel)
    firsts = []
    for rule in RULES:
        try:
            passing = []
            for candidate in rule.candidates(evidence):
                after = _try(b, evidence, tolerance, candidate, keep=False)
                if after is not None:
                    passing.append((after, candidate))
                    if after.max_abs == 0.0:
                        break  # exact: no other candidate can come closer
                elif candidate.b_weights is not None and not candidate.changes_config:
                    firsts.append((rule, candidate))
            if passing:
                best = _closest(passing)
                after = _try(b, evidence, tolerance, best)
                if after is not None:
                    return [_finding(evidence, best, before_size, after)]
        except KdiffError:
            raise
        except Exception as exc:  # noqa: BLE001 -- one rule's failure: the others are still tried
            failed.add(f"rule {rule.ID} on layer {evidence.layer}", exc)
    tries = 0
    for first_rule, first in firsts:
        changed = replace(evidence, b_weights=tuple((name, weight) for (name, _), weight
                                                    in zip(evidence.b_weights, first.b_weights)))
        for rule in RULES:
            if rule is first_rule or any(rule.ID in note for note in failed.notes):
                continue
            for second in _safe_candidates(rule, changed, failed):
                tries += 1
                if tries > MAX_PAIRED_TRIES:
                    return []
                both = replace(second, b_weights=first.b_weights if second.b_weights is None else second.b_weights)
                after = _try(b, evidence, tolerance, both)
                if after is not None:
                    together = {"proven_together_with": [first.cause, second.cause]}
                    return [replace(_finding(evidence, first, before_size, after), detail=together),
                            replace(_finding(evidence, second, before_size, after), detail=together)]
    return []


def _safe_candidates(rule, evidence, failed: NotChecked) -> list:
    try:
        return list(rule.candidates(evidence))
    except Exception as exc:  # noqa: BLE001
        failed.add(f"rule {rule.ID} on layer {evidence.layer}", exc)
        return []


def _closeness(error: ErrorSize) -> tuple[float, float]:
    return (error.max_rel if error.max_rel is not None else float("inf"), error.max_abs)


def _closest(passing: list) -> object:
    """Of a rule's candidates within tolerance, in the rule's order (its likelier values first): the first,
    unless a later one comes at least twice as close (1.001e-05 over 1e-05 where the layer was written with
    it). Within a factor of two the float noise decides which is closer, and the likelier is kept."""
    best_after, best = passing[0]
    for after, candidate in passing[1:]:
        if _closeness(after) < tuple(value / 2 for value in _closeness(best_after)):
            best_after, best = after, candidate
    return best


def _try(b: SideClient, evidence, tolerance: Tolerance | Tolerances, candidate, keep: bool = True) -> ErrorSize | None:
    """Side B's layer with the candidate applied, re-run on side A's inputs: the error when it is
    within tolerance (the change is then kept on side B if ``keep``), else None (side B is left as
    it was)."""
    weights_only = candidate.b_weights is not None and not candidate.changes_config
    if weights_only:
        original = [weight for _, weight in evidence.b_weights]
        b.set_weights(evidence.b_layer, list(candidate.b_weights))
    try:
        after = evidence_mod.isolated_error(b, evidence, tolerance, candidate)
    except InputError:  # side B refuses the change (e.g. the theano worker changes no settings)
        after = None
    if after is not None and after.matches:
        if keep and candidate.changes_config:
            b.change_layer(candidate.layer or evidence.b_layer, candidate.overrides, candidate.training,
                           None if candidate.b_weights is None else list(candidate.b_weights))
        if not keep and weights_only:
            b.set_weights(evidence.b_layer, original)
        return ErrorSize(after.max_abs, after.max_rel)
    if weights_only:
        b.set_weights(evidence.b_layer, original)
    return None


def _finding(evidence, candidate, before: ErrorSize, after: ErrorSize) -> Finding:
    return Finding(cause=candidate.cause, layer=evidence.layer, verified=True, before=before, after=after,
                   fix=candidate.fix, code=candidate.code)


def _b_sources(session, pair) -> list[str]:
    """Side B's names for the layers (or inputs) feeding the pair on side A (its group's first layer)."""
    names = []
    for source in pair.inbound("a"):
        partner = session.pair_of(source)
        names.append(partner.cut("b") if partner is not None and partner.b is not None else source)
    return names


def _self_disagreement(session, sample, measured: dict) -> list[Finding]:
    """Findings for a side that disagrees with itself (from the comparison's noise floor when it was run)."""
    findings = []
    for side in "ab":
        differing = measured[side] if side in measured else session.clients[side].self_check(sample)
        if not differing:
            continue
        layers = session.a_layers if side == "a" else session.b_layers
        ordered = [name for name in layers if name in differing]
        first = ordered[0]
        stochastic = layers[first]["class_name"] in STOCHASTIC_CLASSES
        cause = "dropout-active" if stochastic else "nondeterministic"
        worst = max(differing.values())
        backend = session.sides[0 if side == "a" else 1].backend
        fix = (f"Side {side.upper()} ({backend}) gives different outputs for the same input twice, first at "
               f"'{first}'" + (f" ({layers[first]['class_name']} is active at inference)" if stochastic else "")
               + ": run it in inference mode (training=False) or make it deterministic before comparing.")
        code = (f'# where the model calls "{first}", call it with training=False (or leave it out)\n'
                f'x = model.get_layer("{first}")(x, training=False)' if stochastic else
                "import os\nos.environ['TF_DETERMINISTIC_OPS'] = '1'  # TensorFlow; see your framework's "
                "determinism switch")
        findings.append(Finding(cause=cause, layer=first, verified=True, before=ErrorSize(worst, None),
                                after=None, fix=fix, code=code, explains=tuple(ordered),
                                detail={"side": side, "differing_layers": ordered}))
    return findings
