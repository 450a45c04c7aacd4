"""Every way a user's input can be wrong, as a table: each case is exit 2 with what was wrong and a
hint, no traceback, no environment touched and no process left behind. All of these are caught by
the coordinator before any worker starts (the workers' own refusals are tested with real workers in
test_bad_input_workers.py)."""
import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from kdiff.cli import main
from kdiff.environments import kdiff_home

FIXTURES = Path(__file__).parent / "fixtures"
K2 = FIXTURES / "k2_vgg_channels_first"
K3 = FIXTURES / "k3_cnn"


def _model(case):
    return json.loads((case / "model.json").read_text())


def _write(case, config):
    (case / "model.json").write_text(json.dumps(config))


def _layer(index, **changes):
    def change(case):
        config = _model(case)
        config["config"]["layers"][index]["config"].update(changes)
        _write(case, config)
    return change


def _text(name, content):
    def change(case):
        (case / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return change


def _weights(edit):
    def change(case):
        with h5py.File(case / "weights.h5", "r+") as handle:
            edit(handle)
    return change


def _sample(array):
    def change(case):
        np.save(case / "sample.npy", array, allow_pickle=True)
    return change


def _archive(config="KEEP", metadata="KEEP", drop=()):
    def change(case):
        source = K3 / "model.keras"
        target = case / "model.keras"
        with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
            for item in old.namelist():
                if item in drop:
                    continue
                data = old.read(item)
                if item == "config.json" and config != "KEEP":
                    data = config if isinstance(config, bytes) else json.dumps(config).encode()
                if item == "metadata.json" and metadata != "KEEP":
                    data = json.dumps(metadata).encode()
                new.writestr(item, data)
    return change


def _both(*changes):
    def change(case):
        for one in changes:
            one(case)
    return change


def _nothing(case):
    pass


def _flip_bits(case):
    data = bytearray((case / "weights.h5").read_bytes())
    for offset in range(0, 2048, 7):  # the superblock and the first object headers
        data[offset] ^= 0x5A
    (case / "weights.h5").write_bytes(bytes(data))


def _fifo(name):
    def change(case):
        (case / name).unlink()
        os.mkfifo(case / name)
    return change


def _folder(name):
    def change(case):
        (case / name).unlink()
        (case / name).mkdir()
    return change


def _nested(depth):
    return _text("model.json", '{"class_name": "Sequential", "config": {"layers": ' + "[" * depth + "]" * depth + "}}")


M, W, S = "{model}", "{weights}", "{sample}"
FILES = (M, W, S)
KERAS = ("{keras}", S)

# (case id, change to the files, command line, a fragment the message must hold)
CASES = [
    # the model file
    ("model-missing", _text("other", "x"), ("{dir}/nope.json", W, S), "model file not found"),
    ("model-folder", _folder("model.json"), FILES, "is a folder, not a file"),
    ("model-fifo", _fifo("model.json"), FILES, "not a regular file"),
    ("model-empty", _text("model.json", ""), FILES, "is not a JSON file"),
    ("model-binary", _text("model.json", b"\x89PNG\r\n\x1a\n\x00\x00"), FILES, "is not a JSON file"),
    ("model-truncated", lambda c: _text("model.json", (K2 / "model.json").read_text()[:300])(c), FILES,
     "is not a JSON file"),
    ("model-null", _text("model.json", "null"), FILES, "not a Keras model description"),
    ("model-array", _text("model.json", "[1, 2, 3]"), FILES, "not a Keras model description"),
    ("model-no-class", _text("model.json", '{"config": {}}'), FILES, "not a Keras model description"),
    ("model-nested-1000", _nested(1000), FILES, "nests 1002 levels deep"),
    ("model-nested-100000", _nested(100000), FILES, "nests 100002 levels deep"),
    ("layers-not-list", _text("model.json", '{"class_name": "Sequential", "config": {"layers": 5}}'), FILES,
     "'layers' is int, not a list"),
    ("layer-a-string", _text("model.json", '{"class_name": "Sequential", "config": {"layers": ["Dense"]}}'), FILES,
     "has no 'class_name'"),
    ("layer-class-list", _text("model.json", '{"class_name": "Model", "config": {"layers": [{"class_name": ["Dense"]}]}}'),
     FILES, "has no 'class_name'"),
    ("layer-config-list", _text("model.json", '{"class_name": "Model", "config": {"layers": '
                                '[{"class_name": "Dense", "config": [1]}]}}'), FILES, "its config is list, not an object"),
    ("unsupported-layer", _text("model.json", '{"class_name": "Model", "config": {"layers": '
                                '[{"class_name": "Capsule", "config": {"name": "caps"}}]}}'), FILES,
     "not supported yet: Capsule"),
    ("batch-input-shape-int", _layer(0, batch_input_shape=5), FILES, "'batch_input_shape' is 5"),
    ("batch-input-shape-text", _layer(0, batch_input_shape="abc"), FILES, "'batch_input_shape' is 'abc'"),
    ("batch-input-shape-negative", _layer(0, batch_input_shape=[None, 3, -16, 16]), FILES, "'batch_input_shape'"),
    ("data-format-list", _layer(1, data_format=["channels_first"]), FILES, "'data_format' is [\"channels_first\"]"),
    ("data-format-unknown", _layer(1, data_format="channels_middle"), FILES, "'data_format' is 'channels_middle'"),
    ("padding-unknown", _layer(1, padding="sideways"), FILES, "'padding' is 'sideways'"),
    ("name-int", _layer(1, name=7), FILES, "'name' is 7, but Keras needs a string"),
    ("filters-negative", _layer(0, filters=-8), FILES, "'filters' is -8, but Keras needs a positive integer"),
    ("filters-zero", _layer(0, filters=0), FILES, "'filters' is 0"),
    ("filters-float", _layer(0, filters=8.5), FILES, "'filters' is 8.5"),
    ("filters-bool", _layer(0, filters=True), FILES, "'filters' is true"),
    ("kernel-zero", _layer(0, kernel_size=[3, 0]), FILES, "'kernel_size' is [3, 0]"),
    ("kernel-text", _layer(0, kernel_size="3"), FILES, "'kernel_size' is '3'"),
    ("kernel-empty", _layer(0, kernel_size=[]), FILES, "'kernel_size' is []"),
    ("strides-negative", _layer(1, strides=[-1, 1]), FILES, "'strides' is [-1, 1]"),
    ("pool-zero", _layer(2, pool_size=[0, 2]), FILES, "'pool_size' is [0, 2]"),
    ("units-nan", lambda c: _text("model.json", (K2 / "model.json").read_text().replace('"units": 10', '"units": NaN'))(c),
     FILES, "'units' is NaN"),
    ("units-string", _layer(-1, units="ten"), FILES, "'units' is 'ten'"),
    ("units-float", _layer(-1, units=10.0), FILES, "'units' is 10.0"),
    ("units-huge-float", _layer(-1, units=1e300), FILES, "'units' is 1e+300"),
    ("dropout-rate-text", lambda c: _write(c, {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dropout", "config": {"name": "d", "rate": "0.5", "batch_input_shape": [None, 4]}}]}}),
     FILES, "'rate' is '0.5'"),
    ("epsilon-nan", lambda c: _write(c, {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "BatchNormalization", "config": {"name": "bn", "epsilon": float("nan"),
                                                        "batch_input_shape": [None, 4]}}]}}), FILES, "'epsilon' is NaN"),
    ("wrapped-class-list", lambda c: _write(c, {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "TimeDistributed", "config": {"name": "td", "layer": {"class_name": ["Dense"], "config": {}}}}]}}),
     FILES, "the layer it wraps is not a layer description"),
    ("duplicate-names", _layer(1, name="conv2d_1"), FILES, "two layers named 'conv2d_1'"),
    # the weights file
    ("weights-missing", _nothing, (M, "{dir}/nope.h5", S), "weights file not found"),
    ("weights-folder", _folder("weights.h5"), FILES, "is a folder, not a file"),
    ("weights-text", _text("weights.h5", "hello"), FILES, "is not a readable HDF5 file"),
    ("weights-truncated", lambda c: _text("weights.h5", (K2 / "weights.h5").read_bytes()[:5000])(c), FILES,
     "is not a readable HDF5 file"),
    ("weights-bit-flipped", _flip_bits, FILES, "is not a readable HDF5 file"),
    ("weights-not-keras", _weights(lambda h: [h.attrs.__delitem__("layer_names")]), FILES, "holds no Keras weights"),
    ("weights-group-missing", _weights(lambda h: h.__delitem__("dense_1")), FILES,
     "lists the weights of layer 'dense_1' but holds no group"),
    ("weights-array-missing", _weights(lambda h: h["dense_1"].__delitem__("dense_1/kernel")), FILES,
     "lists the weight 'dense_1/kernel' but holds no such array"),
    ("weights-strings", _weights(lambda h: [h["dense_1"].__delitem__("dense_1/bias"),
                                            h["dense_1"].create_dataset("dense_1/bias", data=np.array([b"x"] * 10))]),
     FILES, "a dataset of |S1 values, not numbers"),
    # the sample
    ("sample-missing", _nothing, (M, W, "{dir}/nope.npy"), "sample file not found"),
    ("sample-folder", _folder("sample.npy"), FILES, "is a folder, not a file"),
    ("sample-empty-file", _text("sample.npy", b""), FILES, "is not a .npy file"),
    ("sample-text", _text("sample.npy", "1 2 3"), FILES, "sample.npy"),
    ("sample-npz", lambda c: np.savez(c / "sample.npy.npz", x=np.ones(3)) or shutil.move(c / "sample.npy.npz",
                                                                                       c / "sample.npy"),
     FILES, "an archive of several arrays"),
    ("sample-pickled", _sample(np.array([{"a": 1}], dtype=object)), FILES, "cannot be read without unpickling"),
    ("sample-strings", _sample(np.array(["a", "b"])), FILES, "not numbers"),
    ("sample-complex", _sample(np.ones((2, 3, 16, 16), np.complex64)), FILES, "not numbers"),
    ("sample-wrong-shape", _sample(np.ones((2, 16, 16, 3), np.float32)), FILES, "but the model expects"),
    ("sample-no-batch", _sample(np.ones((0, 3, 16, 16), np.float32)), FILES, "holds no samples"),
    ("sample-scalar", _sample(np.float32(1.0)), FILES, "but the model expects"),
    # the options
    ("timeout-negative", _nothing, (*FILES, "--timeout=-1"), "--timeout -1: a deadline must be a positive"),
    ("timeout-zero", _nothing, (*FILES, "--timeout", "0"), "--timeout 0"),
    ("timeout-inf", _nothing, (*FILES, "--timeout", "inf"), "--timeout inf"),
    ("timeout-text", _nothing, (*FILES, "--timeout", "soon"), "invalid float value: 'soon'"),
    ("atol-negative", _nothing, (*FILES, "--atol=-1e-5"), "--atol -1e-05: a tolerance must be"),
    ("rtol-nan", _nothing, (*FILES, "--rtol", "nan"), "--rtol nan"),
    ("json-folder-missing", _nothing, (*FILES, "--json", "{dir}/no/such/folder/r.json"), "does not exist"),
    ("json-is-folder", _nothing, (*FILES, "--json", "{dir}"), "is a folder"),
    ("html-folder-missing", _nothing, (*FILES, "--html", "{dir}/no/such/folder/r.html"), "--html {dir}/no/such"),
    ("html-is-folder", _nothing, (*FILES, "--html", "{dir}"), "--html {dir} is a folder"),
    ("dump-is-file", _nothing, (*FILES, "--dump", "{dir}/sample.npy"), "is a file, not a folder"),
    ("write-fixed-is-file", _nothing, (*FILES, "--write-fixed", "{dir}/sample.npy"), "is a file, not a folder"),
    ("a-python-folder", _nothing, (*FILES, "--a-python", "{dir}"), "--a-python {dir}: a folder"),
    ("a-python-missing", _nothing, (*FILES, "--a-python", "{dir}/python9"), "not found"),
    ("b-python-not-executable", _nothing, (*FILES, "--b-python", "{dir}/model.json"), "not an executable file"),
    ("custom-objects-missing", _nothing, (*FILES, "--custom-objects", "{dir}/objects.py"), "custom objects file not found"),
    ("custom-objects-folder", _nothing, (*FILES, "--custom-objects", "{dir}"), "is a folder"),
    ("labels-missing", _nothing, (*FILES, "--loss", "mse", "--labels", "{dir}/y.npy"), "labels file not found"),
    ("loss-without-labels", _nothing, (*FILES, "--loss", "mse"), "--loss was given without --labels"),
    ("unknown-backend", _nothing, (*FILES, "--b", "caffe"), "unknown backend 'caffe'"),
    ("bad-layout", _nothing, (*FILES, "--b-layout", "diagonal"), "invalid choice: 'diagonal'"),
    ("layout-on-theano", _nothing, (*FILES, "--b", "theano", "--b-layout", "channels_last"), "builds a model only"),
    ("unknown-option", _nothing, (*FILES, "--frobnicate"), "unrecognized arguments: --frobnicate"),
    ("too-many-files", _nothing, (*FILES, S, S), "expected MODEL [WEIGHTS] SAMPLE, got 5 file(s)"),
    ("too-few-files", _nothing, (S,), "expected MODEL [WEIGHTS] SAMPLE, got 1 file(s)"),
    # kdiff attach and train
    ("attach-timeout-negative", _nothing, ("attach", "tcp://127.0.0.1:9", "--timeout=-5"), "--timeout -5"),
    ("attach-json-folder-missing", _nothing, ("attach", "tcp://127.0.0.1:9", "--json", "{dir}/no/r.json"),
     "does not exist"),
    ("attach-html-folder-missing", _nothing, ("attach", "tcp://127.0.0.1:9", "--html", "{dir}/no/r.html"),
     "does not exist"),
    ("train-html-is-folder", _nothing, ("train", M, W, S, S, "--loss", "mse", "--optimizer", "sgd", "--html", "{dir}"),
     "--html {dir} is a folder"),
    ("attach-step-negative", _nothing, ("attach", "tcp://127.0.0.1:9", "--at-step=-3"), "--at-step -3"),
    ("train-labels-missing", _nothing, ("train", M, W, S, "{dir}/y.npy", "--loss", "mse", "--optimizer", "sgd"),
     "y file not found"),
    ("train-timeout-zero", _nothing, ("train", M, W, S, S, "--loss", "mse", "--optimizer", "sgd", "--timeout", "0"),
     "--timeout 0"),
    # Keras 3 archives
    ("keras-not-zip", _text("model.keras", "not a zip"), KERAS, "is not a readable Keras 3 .keras file"),
    ("keras-no-config", _archive(drop=("config.json",)), KERAS, "is not a readable Keras 3 .keras file"),
    ("keras-config-list", _archive(config=[1, 2]), KERAS, "config.json holds a JSON list, not an object"),
    ("keras-metadata-list", _archive(metadata=["3.15"]), KERAS, "metadata.json holds a JSON list"),
    ("keras-config-deep", _archive(config=b"[" * 5000 + b"]" * 5000), KERAS, "nests 5000 levels deep"),
    ("keras-on-theano", _nothing, (*KERAS, "--a", "theano"), "cannot load a Keras 3 model"),
]


def _children() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def test_the_table_is_large_and_its_cases_named_once():
    names = [case[0] for case in CASES]
    assert len(names) >= 60 and len(names) == len(set(names))


@pytest.mark.parametrize("name, change, argv, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_exit_2_with_a_message_and_a_hint(name, change, argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))  # no environment can be found or built here
    case = tmp_path / "case"
    case.mkdir()
    for source in (K2 / "model.json", K2 / "weights.h5", K2 / "sample.npy", K3 / "model.keras"):
        shutil.copy(source, case / source.name)
    np.save(case / "k3sample.npy", np.load(K3 / "sample.npy"))
    change(case)
    places = {"model": case / "model.json", "weights": case / "weights.h5", "sample": case / "sample.npy",
              "keras": case / "model.keras", "dir": case}
    argv = [part.format(**places) for part in argv]
    if argv[:1] == [str(case / "model.keras")]:
        argv[1] = str(case / "k3sample.npy")
    before = _children()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert message.format(**places) in err, err
    assert "hint:" in err and "Traceback" not in out + err
    assert not (kdiff_home() / "envs").exists(), "bad input must be caught before environments are touched"
    assert _children() <= before, "a process was left behind"
