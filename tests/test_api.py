"""The Python API as a user calls it (issue #17): kdiff.compare, kdiff.Session, kdiff.testing.
Argument mistakes and the failure text are fast; the engine itself runs real workers on the
bundled example (Keras 2.3.1 on Theano against Keras 3 on TensorFlow: three flipped kernels)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kdiff
from kdiff.errors import InputError, UsageError
from kdiff.testing import assert_models_match, mismatch_message
from tests.browser import assert_drawn, chromium, open_page
from tests.test_ui import DIVERGED

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "theano_vgg"
MODEL, WEIGHTS, SAMPLE = EXAMPLE / "model.json", EXAMPLE / "weights.h5", EXAMPLE / "sample.npy"


def test_importing_kdiff_imports_no_engine_until_it_is_used():
    code = "import sys, kdiff; print(sorted({'rich', 'zmq', 'kdiff.api'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize("call, message", [
    (lambda: kdiff.compare(MODEL, WEIGHTS, SAMPLE, tolerance=1e-3), "unknown option"),
    (lambda: kdiff.compare(MODEL, WEIGHTS), "needs a sample"),
    (lambda: kdiff.compare(MODEL, WEIGHTS, [np.zeros((1, 3, 16, 16))]), "the sample is a list"),
    (lambda: kdiff.compare(MODEL, WEIGHTS, SAMPLE, b="nobackend"), "unknown backend"),
    (lambda: kdiff.compare(MODEL, WEIGHTS, SAMPLE, b_layout="sideways"), "invalid choice"),
    (lambda: kdiff.Session(MODEL, WEIGHTS, write_fixed="out"), "repaired model on request"),
    (lambda: kdiff.Session(MODEL, WEIGHTS).compare(SAMPLE), "not started"),
])
def test_a_mistake_is_kdiffs_own_error_with_a_hint(call, message):
    with pytest.raises((UsageError, InputError), match=message) as raised:
        call()
    assert raised.value.hint


def test_an_array_sample_is_checked_as_a_file_would_be():
    with pytest.raises(InputError, match="has shape \\(2, 5\\) but the model expects"):
        kdiff.compare(MODEL, WEIGHTS, np.zeros((2, 5), np.float32))


def test_the_failure_text_is_the_reports_first_divergence_and_rows_without_colour():
    text = mismatch_message(DIVERGED)
    assert text.startswith("the models do not match: first divergence at conv2d_1 (Conv2D)\n")
    assert "conv2d_1" in text and "diverged" in text and "\x1b[" not in text


@pytest.mark.slow
def test_compare_gives_the_reports_of_the_command_line_and_assert_models_match_fails_with_it(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    report = kdiff.compare(MODEL, WEIGHTS, np.load(SAMPLE), gradients=False)
    cli, page = tmp_path / "cli.json", tmp_path / "cli.html"
    subprocess.run([sys.executable, "-m", "kdiff", MODEL, WEIGHTS, SAMPLE, "--no-grad", "--json", cli, "--html", page],
                   capture_output=True, text=True, timeout=600)
    ours, theirs = report.to_json(), json.loads(cli.read_text())
    # the --html page of the same run, in a real browser: error curves, conv2d_1's picture (3 axes), findings
    attributes, drawn = open_page(chromium(), page, screenshot="html_report_example.png")
    assert_drawn(attributes, plots=7)
    assert "The divergence starts at layer 'conv2d_1' (#0)." in drawn and 'data-cause="conv-kernel-flip"' in drawn
    assert 'class="layer first"' in drawn and "iframe" in report._repr_html_()
    assert report.exit_code == 1 and ours["first_divergence"] == theirs["first_divergence"]
    assert [(f["cause"], f["layer"]) for f in ours["findings"]] == [(f["cause"], f["layer"]) for f in theirs["findings"]]
    assert [(l["name"], l["status"]) for l in ours["layers"]] == [(l["name"], l["status"]) for l in theirs["layers"]]
    with pytest.raises(AssertionError, match="first divergence at conv2d_1") as failed:
        raise AssertionError(mismatch_message(report))
    assert "conv-kernel-flip" in str(failed.value)


@pytest.mark.slow
def test_a_session_keeps_the_workers_and_its_proven_fixes_for_the_next_compare(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    with kdiff.Session(MODEL, WEIGHTS, gradients=False) as session:
        first = session.compare(np.load(SAMPLE))
        again = session.compare(SAMPLE, diagnose=False)  # side B holds every fix proven by the first
        files = session.write_fixed(tmp_path / "fixed")
    assert first.exit_code == 1 and {f.cause for f in first.findings} == {"conv-kernel-flip"}
    assert again.exit_code == 0 and all(layer.status == "match" for layer in again.layers)
    assert Path(files[0]).name == "model.keras"
    assert_models_match(MODEL, WEIGHTS, SAMPLE, b=f"tensorflow:{files[0]}", gradients=False, diagnose=False)
