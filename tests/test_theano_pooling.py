"""'same' pooling as Keras's Theano backend padded it (padding-same-asymmetry on a pooling): each axis padded
k - 2 (odd k > 2) or k - 1 on both sides, the first ceil(n/s) outputs kept, so a stride-2 pool over an even size,
or an even pool, starts its windows elsewhere than TensorFlow's 'same'. Real file: k2_pool_same, written by
Keras 2.3.1 on Theano (tests/fixtures/generate_pool_same.py): four poolings that differ, named, proven and
written with kdiff's TheanoSamePooling layer; two that agree, left alone."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow
FIXTURE = FIXTURES / "k2_pool_same"
DIFFERING = ["avg3_s2_even", "max3_s2_even", "avg2_s2_odd", "max1d3_s2_even"]


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_theano_same_poolings_are_named_proven_and_written(env_python, tmp_path, backend):
    env_python("theano"), env_python(backend)
    out, fixed = tmp_path / "r.json", tmp_path / "fixed"
    result = subprocess.run([sys.executable, "-m", "kdiff", "fix", FIXTURE / "model.json", FIXTURE / "weights.h5",
                             FIXTURE / "sample.npy", "--b", backend, "-o", fixed, "--json", out],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["first_divergence"]["layer"] == "avg3_s2_even"
    assert [(f["cause"], f["layer"], f["verified"]) for f in report["findings"]] == \
        [("padding-same-asymmetry", name, True) for name in DIFFERING]
    rows = {row["name"]: row for row in report["layers"]}
    assert rows["avg3_s1"]["status"] == rows["max3_s2_odd"]["status"] == "match"  # where Theano agrees
    assert report["after_fixes"]["all_match"] and report["written"]["verified"] is True
    # the written model, loaded as a user would (kdiff's layers imported), predicts what Theano's Keras did
    repo = FIXTURES.parent.parent
    theano_prediction = tmp_path / "theano_prediction.npy"
    np.save(theano_prediction, np.load(FIXTURE / "activations.npz")["dense"])
    checked = subprocess.run([env_python(backend), str(repo / "benchmarks" / "corpus" / "check_fixed.py"),
                              str(fixed / "model.keras"), str(FIXTURE / "sample.npy"), str(theano_prediction)],
                             capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, KERAS_BACKEND=backend))
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert json.loads(checked.stdout.strip().splitlines()[-1])["max_rel_to_scale"] < 1e-5
