"""A rule that fails (a bug of kdiff's own) never ends the run: it becomes 'rule X could not be checked
on layer Y' with its traceback in a log, and the other rules are still tried (fast tier, stand-in side)."""
import numpy as np

from kdiff.diagnosis import repair
from kdiff.diagnosis.model import Candidate, LayerEvidence
from kdiff.metrics import Tolerance


class ScaleSide:
    """Side B: one layer computing x * w, w its one weight."""

    def __init__(self, w: float):
        self.w = np.float32(w)

    def run_layer(self, layer, inputs):
        return [inputs[0] * self.w]

    def set_weights(self, layer, arrays):
        self.w = np.float32(arrays[0])


class Broken:
    ID = "broken-rule"

    @staticmethod
    def candidates(evidence):
        raise ValueError("layer gives outputs of shapes [(2, 15)] on side B, [(2, 16)] on side A")
        yield  # (a generator, as rules are)


class Rescale:
    ID = "rescale"

    @staticmethod
    def candidates(evidence):
        yield Candidate(cause="rescale", fix="use w = 2", code="w = 2", b_weights=(np.float32(2.0),))


def _evidence():
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    return LayerEvidence(layer="scale", b_layer="scale", class_name="Scale", a_inputs=(x,), a_outputs=(x * 2,),
                         b_weights=(("w", np.float32(3.0)),), a_weights=(("w", np.float32(2.0)),))


def test_a_failing_rule_is_noted_and_the_next_rule_still_proves_the_cause(monkeypatch, tmp_path):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path))
    monkeypatch.setattr(repair, "RULES", (Broken, Rescale))
    failed = repair.NotChecked()
    found = repair._prove(ScaleSide(3.0), _evidence(), Tolerance(1e-6, 1e-5), failed)
    assert [finding.cause for finding in found] == ["rescale"] and found[0].verified
    (note,) = failed.notes
    assert note.startswith("rule broken-rule on layer scale could not be checked: ValueError: layer gives outputs")
    log = note.rsplit("the traceback is in ", 1)[1].rstrip(")")
    assert log.startswith(str(tmp_path / "logs")) and "candidates" in open(log).read()


def test_no_note_when_every_rule_runs(monkeypatch):
    monkeypatch.setattr(repair, "RULES", (Rescale,))
    failed = repair.NotChecked()
    assert repair._prove(ScaleSide(3.0), _evidence(), Tolerance(1e-6, 1e-5), failed) and failed.notes == []
