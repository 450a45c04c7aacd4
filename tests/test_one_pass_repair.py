"""One pass for many faults: once the first divergence is proven, every later layer that differs on its
own (run alone on side A's inputs) is diagnosed in the same round, and one comparison of the whole model
checks all the fixes, not one comparison per fault. Real workers, the bundled Theano-era example (three
flipped kernels)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parent.parent / "examples" / "theano_vgg"


def test_three_flipped_kernels_are_proven_in_one_round_and_checked_by_one_comparison(env_python, tmp_path):
    for env in ("theano", "tensorflow"):
        env_python(env)
    result = subprocess.run([sys.executable, "-m", "kdiff", EXAMPLE / "model.json", EXAMPLE / "weights.h5",
                             EXAMPLE / "sample.npy", "--no-grad", "--json", tmp_path / "r.json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(f["cause"], f["layer"], f["verified"]) for f in report["findings"]] == [
        ("conv-kernel-flip", name, True) for name in ("conv2d_1", "conv2d_2", "conv2d_3")]
    assert report["after_fixes"]["all_match"] is True
    progress = " ".join(result.stderr.split())  # (the progress lines wrap at the console's width)
    assert progress.count("comparing again with") == 1
    assert "3 fix(es) proven at conv2d_1, conv2d_2, conv2d_3; comparing again with them" in progress
    explained = {f["layer"]: f["explains"] for f in report["findings"]}
    assert explained["conv2d_1"] == ["conv2d_1"] and explained["conv2d_2"] == ["conv2d_2", "max_pooling2d_1"]
    assert explained["conv2d_3"][:2] == ["conv2d_3", "max_pooling2d_2"] and explained["conv2d_3"][-1] == "dense_2"
