"""kdiff's Theano loading does not pay for Keras 2.3.1's initial values, nor compile its forward pass more than
once (found on the corpus, benchmarks/corpus: Keras 2.3.1's symbolic initializers compiled one Theano function
per weight, 40 s of a MobileNet's load; each forward_all compiled the whole graph again)."""
import json
import subprocess

import pytest

from tests.conftest import fixture_dir

pytestmark = pytest.mark.slow


def test_weights_loaded_next_start_as_placeholders_and_the_forward_is_compiled_once(env_python):
    folder = fixture_dir("k2_bn_dropout_functional")
    result = subprocess.run([env_python("theano"), "tests/theano_checks/check_loading_cost.py", str(folder)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    cost = json.loads(result.stdout.strip().splitlines()[-1])
    # without a weights file Keras's own initial values are drawn (12 weights here), and none is left zero
    assert cost["symbolic_initial_values"] == {"without_weights": 12, "with_weights": 0}
    assert cost["zero_weights_without_file"] == 0
    assert cost["reproduces"] < 1e-5                   # the file's weights, every layer as Keras computed it
    assert cost["forward_compiles"] == 1               # three forward passes, one compiled function
    assert cost["after_set_weights_changes"] is True   # and it sees later weights
