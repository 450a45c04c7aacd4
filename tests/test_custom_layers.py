"""A layer class of the user's own (issue 13): the model file names a class that no Keras has, and the
user's --custom-objects file defines it for both sides' Keras. The coordinator reads the file's names
without running it (kdiff/custom_objects.py) and refuses a class the file does not define; each worker
runs the file and builds the layer from the file's config. Real files: k2_custom_layer, written by Keras
2.3.1 on Theano with tests/fixtures/custom_layers.py, and k1_custom_layer, by Keras 1.2.2
(tests/fixtures/generate_custom_layer.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdiff.cli import main
from kdiff.custom_objects import defined_names
from kdiff.environments import kdiff_home
from kdiff.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "k2_custom_layer"
LAYERS = FIXTURES / "custom_layers.py"


@pytest.fixture
def no_envs(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))  # no environment can be found or built here
    return tmp_path


def refused(capsys, *args) -> str:
    code = main([str(FIXTURE / "model.json"), str(FIXTURE / "weights.h5"), str(FIXTURE / "sample.npy"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (kdiff_home() / "envs").exists(), "refused before any environment is touched"
    return err


def test_a_layer_class_of_ones_own_without_the_file_is_refused_with_the_way_out(capsys, no_envs):
    err = refused(capsys)
    assert "not supported yet: Affine" in err and "--custom-objects FILE.py" in err


def test_a_layer_class_the_file_does_not_define_is_refused_naming_the_file(capsys, no_envs):
    other = no_envs / "other.py"
    other.write_text("def gelu_tanh(x):\n    return x\n")
    err = refused(capsys, "--custom-objects", str(other))
    assert f"nor defined in {other}: Affine" in err


def test_a_file_that_is_not_python_is_refused(capsys, no_envs):
    broken = no_envs / "broken.py"
    broken.write_text("class Affine(:\n")
    err = refused(capsys, "--custom-objects", str(broken))
    assert "is not valid Python (line 1)" in err


@pytest.mark.parametrize("source", [b"(" * 100000, b"\x00\xff", b"x = [" * 3000, bytes(range(256)) * 40],
                         ids=["deep-parentheses", "nul", "deep-lists", "every-byte"])
def test_any_bytes_as_the_file_are_a_plain_refusal(tmp_path, source):
    path = tmp_path / "objects.py"
    path.write_bytes(source)
    with pytest.raises(InputError) as refusal:
        defined_names(path)
    assert refusal.value.reference == "custom-objects-syntax"


def test_names_are_read_from_every_top_level_block_without_running_the_file(tmp_path):
    path = tmp_path / "objects.py"
    path.write_text("import keras as K2\nraise SystemExit('run!')\nif K2:\n    class A: pass\nelse:\n"
                    "    def b(): pass\ntry:\n    from k import C as D\nexcept ImportError:\n    E = F = 1\n_G = 1\n"
                    "def outer():\n    class Inner: pass\n")
    assert defined_names(path) == {"K2", "A", "b", "D", "E", "F", "outer"}
    assert defined_names(LAYERS) >= {"Affine"}


def kdiff(tmp_path, *args, timeout=600):
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "kdiff", *map(str, args), "--json", str(report)],
                            capture_output=True, text=True, timeout=timeout)
    assert report.exists(), result.stderr[-3000:]
    return result.returncode, json.loads(report.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("fixture, backend", [("k2_custom_layer", "tensorflow"), ("k2_custom_layer", "jax"),
                                              ("k2_custom_layer", "torch"), ("k2_custom_layer", "tf-keras"),
                                              ("k1_custom_layer", "tensorflow")])
def test_the_users_layer_class_matches_theano_on_every_backend(env_python, tmp_path, fixture, backend):
    """Outputs and gradients, the Affine layer's two weights included, match Keras 2.3.1 (1.2.2) on Theano; the
    tf-keras worker gives the file tf_keras as its ``keras``."""
    env_python("theano-keras1" if fixture.startswith("k1") else "theano"), env_python(backend)
    folder = FIXTURES / fixture
    code, report = kdiff(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                         "--b", backend, "--custom-objects", LAYERS)
    assert code == 0, report
    rows = {row["name"]: row for row in report["layers"]}
    assert rows["affine_1"]["class"] == "Affine" and rows["affine_1"]["status"] == "match"
    assert report["first_divergence"] is None and report["first_grad_divergence"] is None
    assert "K=8" in rows["affine_1"]["tolerance"]["reason"]  # its kernel's reduction length was found


@pytest.mark.slow
@pytest.mark.parametrize("fixture, backend", [("k2_custom_layer", "torch"), ("k1_custom_layer", "jax")])
def test_a_full_model_file_with_the_users_layer_class(env_python, tmp_path, fixture, backend):
    env_python("theano-keras1" if fixture.startswith("k1") else "theano"), env_python(backend)
    code, report = kdiff(tmp_path, FIXTURES / fixture / "full_model.h5", FIXTURES / fixture / "sample.npy",
                         "--b", backend, "--custom-objects", LAYERS, "--no-grad")
    assert code == 0, report
    assert [row["name"] for row in report["layers"]] == ["dense_1", "affine_1", "dense_2"]


@pytest.mark.slow
def test_a_wrong_port_of_the_users_layer_is_found_at_that_layer(env_python, tmp_path):
    """The same file, but on Keras 3 the bias is scaled by 0.99: the divergence starts at affine_1, whose
    inputs match, and no rule claims it."""
    env_python("theano"), env_python("tensorflow")
    wrong = tmp_path / "wrong_layers.py"
    text = LAYERS.read_text()
    assert "+ self.bias)" in text
    wrong.write_text(text.replace("+ self.bias)", "+ (self.bias if ops is keras.backend else 0.99 * self.bias))"))
    code, report = kdiff(tmp_path, FIXTURE / "model.json", FIXTURE / "weights.h5", FIXTURE / "sample.npy",
                         "--custom-objects", wrong, "--no-grad")
    assert code == 1, report
    assert report["first_divergence"]["layer"] == "affine_1"
    assert report["unexplained"]["layer"] == "affine_1" and report["findings"] == []


@pytest.mark.slow
def test_keras_2_3_1s_own_antirectifier_example_and_the_model_kdiff_writes(env_python, tmp_path):
    """Keras 2.3.1's examples/antirectifier.py, its model as written (benchmarks/corpus), on Theano against
    TensorFlow; the written Keras 3 model, loaded with the same file as a user would, predicts Theano's."""
    env_python("theano"), env_python("tensorflow")
    repo = Path(__file__).resolve().parent.parent
    generated = subprocess.run([env_python("theano"), str(repo / "benchmarks" / "corpus" / "generate.py"),
                                "--only", "ex_antirectifier", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=600)
    assert generated.returncode == 0, generated.stderr[-3000:]
    folder, objects = tmp_path / "ex_antirectifier", repo / "benchmarks" / "corpus" / "examples" / "antirectifier_objects.py"
    fixed = tmp_path / "fixed"
    code, report = kdiff(tmp_path, folder / "model.json", folder / "weights.h5", folder / "sample.npy",
                         "--custom-objects", objects, "--write-fixed", fixed)
    assert code == 0, report
    assert [row["class"] for row in report["layers"]].count("Antirectifier") == 2
    assert (fixed / "model.keras").exists()
    checked = subprocess.run([env_python("tensorflow"), str(repo / "benchmarks" / "corpus" / "check_fixed.py"),
                              str(fixed / "model.keras"), str(folder / "sample.npy"),
                              str(folder / "theano_prediction.npy"), "--custom-objects", str(objects)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert json.loads(checked.stdout.strip().splitlines()[-1])["max_rel_to_scale"] < 1e-5
