"""The repair loop: diagnose the first divergence, keep the proven fix on side B, compare again."""
from __future__ import annotations

from dataclasses import dataclass, replace

from kdiff.diagnosis import evidence as evidence_mod
from kdiff.diagnosis.model import ErrorSize, Finding, Unexplained
from kdiff.diagnosis.rules import RULES
from kdiff.errors import InputError
from kdiff.metrics import Tolerance
from kdiff.report import MATCH, DiffReport
from kdiff.worker_calls import SideClient

STOCHASTIC_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                      "GaussianDropout", "AlphaDropout"}
MAX_ROUNDS = 64


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    unexplained: Unexplained | None
    repaired: DiffReport | None     # the comparison after every proven fix; None when none was applied


def diagnose(session, sample, report: DiffReport, tolerance: Tolerance, progress) -> Diagnosis:
    """Findings for every divergence that a rule can prove, in the order they were found."""
    if report.exit_code == 0:
        return Diagnosis((), None, None)
    a, b = session.clients["a"], session.clients["b"]
    progress.stage("checking that each side agrees with itself")
    noisy = _self_disagreement(session, sample, report.noise_floor)
    if noisy:  # a comparison with a side that disagrees with itself proves nothing further
        return Diagnosis(tuple(noisy), None, None)
    findings: list[Finding] = []
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
        evidence = evidence_mod.gather(pair, session.a_layers, a, b)
        finding = _prove(b, evidence, tolerance)
        if finding is None:
            b_inputs = [b.outputs([s])[s][0] for s in _b_sources(session, pair)]
            return Diagnosis(tuple(findings), evidence_mod.describe_unexplained(b, evidence, tolerance, b_inputs),
                             current if findings else None)
        progress.stage(f"{finding.cause} proven at {layer.name}; comparing again with the fix")
        session.refresh_weight_maps([layer.name])  # a reordering fix reorders the layer's gradients too
        repaired = session.compare(sample, gradients=False, noise_floor=False)
        if repaired.first_divergence is not None and repaired.first_divergence[1].name == layer.name:
            break  # the fix holds alone but not in the model: say no more than what was proven
        explains = tuple(before.name for before, after in zip(current.layers, repaired.layers)
                         if before.status != MATCH and after.status == MATCH)
        findings.append(replace(finding, explains=explains))
        current = repaired
    if findings and session.options.gradients:
        progress.stage("comparing gradients with every proven fix applied")
        current = session.compare(sample, noise_floor=False)
    return Diagnosis(tuple(findings), None, current if findings else None)


def _prove(b: SideClient, evidence, tolerance: Tolerance) -> Finding | None:
    """The first candidate that brings side B's layer within tolerance, kept on side B, as a finding."""
    before = evidence_mod.isolated_error(b, evidence, tolerance)
    if before.matches:
        return None  # run alone, the layer agrees: re-running it cannot tell a fix from no fix
    original = [weight for _, weight in evidence.b_weights]
    for rule in RULES:
        for candidate in rule.candidates(evidence):
            if candidate.b_weights is not None:
                b.set_weights(evidence.b_layer, list(candidate.b_weights))
            try:
                after = evidence_mod.isolated_error(b, evidence, tolerance, candidate)
            except InputError:  # side B refuses the change (e.g. the theano worker changes no settings)
                after = None
            if after is not None and after.matches:
                if candidate.changes_config:
                    b.change_layer(evidence.b_layer, candidate.overrides, candidate.training)
                return Finding(cause=candidate.cause, layer=evidence.layer, verified=True,
                               before=ErrorSize(before.max_abs, before.max_rel),
                               after=ErrorSize(after.max_abs, after.max_rel), fix=candidate.fix, code=candidate.code)
            if candidate.b_weights is not None:
                b.set_weights(evidence.b_layer, original)
    return None


def _b_sources(session, pair) -> list[str]:
    """Side B's names for the layers (or inputs) feeding the pair's layer on side A."""
    names = []
    for source in pair.a.get("inbound", ()):
        partner = session.pair_of(source)
        names.append(partner.b["name"] if partner is not None and partner.b is not None else source)
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
