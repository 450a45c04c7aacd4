"""The per-layer worker commands (weights, set_weights, run_layer, backward) on real workers in
real environments, checked against each worker's own forward pass, finite differences and the
other backends."""
import time

import numpy as np
import pytest

from kdiff.environments import kdiff_home
from kdiff.errors import InputError
from kdiff.worker_calls import SideClient
from kdiff.workers import WorkerPool
from kdiff.protocol import vocabulary
from tests.conftest import fixture_dir

pytestmark = pytest.mark.slow

KERAS3_ENVS = ["tensorflow", "jax", "torch", "tf-keras"]


@pytest.fixture(scope="module")
def side(env_python):
    """side(env): the worker of that kdiff environment, started on first use and named after it."""
    with WorkerPool() as pool:
        def get(env: str) -> SideClient:
            if env not in pool.workers:
                backend = "theano" if env.startswith("theano") else env
                options = {"compiledir": str(kdiff_home() / "theano-compiledir")} if backend == "theano" else {}
                pool.spawn(env, backend, env_python(env), options)
                pool.wait_hello(env)
            return SideClient(pool, env)

        yield get


def load(client: SideClient, fixture: str) -> list[dict]:
    """Load the fixture afresh (its weights as stored); its layers as described by the worker."""
    folder = fixture_dir(fixture)
    if (folder / "model.keras").exists():
        files = {"model": str(folder / "model.keras")}
    else:
        files = {"model": str(folder / "model.json"), "weights": str(folder / "weights.h5")}
    return client.pool.call(client.side, "load", files)[0]["layers"]


def loaded(side, env: str, fixture: str) -> SideClient:
    client = side(env)
    load(client, fixture)
    return client


def sample_of(fixture: str) -> np.ndarray:
    return np.load(fixture_dir(fixture) / "sample.npy")


def streamed(client: SideClient, command: str, arrays: dict) -> list[tuple[dict, dict]]:
    """The (header, arrays) of every part a streaming command sends, in order."""
    return _parts(client, client.pool.send(client.side, command, arrays=arrays))


def _parts(client: SideClient, seq: int) -> list[tuple[dict, dict]]:
    parts, deadline = [], time.monotonic() + 300
    while True:
        _, header, part_arrays = client.pool.receive_any({client.side: seq}, deadline)
        if header["type"] == "reply":
            return parts
        parts.append((header, part_arrays))


def forward(client: SideClient, sample: np.ndarray) -> dict[str, list[np.ndarray]]:
    return {header["layer"]: [arrays[k] for k in sorted(arrays, key=int)]
            for header, arrays in streamed(client, "forward", {"0": sample})}


def backward(client: SideClient, sample: np.ndarray, projection: np.ndarray | None,
             loss: str | None = None, labels: np.ndarray | None = None) -> dict[str, tuple[list, dict]]:
    """layer -> ([d loss / d output], {weight name: d loss / d weight}) for loss = sum(output * projection),
    or for the named Keras loss on the labels."""
    grads = {}
    arrays = {"x0": sample, "p0": projection} if loss is None else {"x0": sample, "y0": labels}
    seq = client.pool.send(client.side, "backward", {"loss": loss} if loss else None, arrays)
    for header, arrays in _parts(client, seq):
        outputs = vocabulary.unpack(arrays, vocabulary.OUTPUT_GRADIENTS)
        grads[header["layer"]] = (outputs, dict(zip(header["weights"], vocabulary.unpack(arrays, vocabulary.WEIGHT_GRADIENTS))))
    return grads


def scaled_error(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference relative to the largest expected value (elementwise relative
    errors blow up on values that cancel to near zero, e.g. just below a ReLU's kink)."""
    expected = np.asarray(expected, np.float64)
    return float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-12))


def projection_for(output: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal(output.shape).astype(np.float32)


def assert_same_gradients(got: dict, expected: dict, tolerance: float) -> None:
    assert list(got) == list(expected)
    for layer, (output_grads, weight_grads) in expected.items():
        assert len(got[layer][0]) == len(output_grads)
        for a, b in zip(got[layer][0], output_grads):
            assert scaled_error(a, b) < tolerance, layer
        assert list(got[layer][1]) == list(weight_grads)
        for name, grad in weight_grads.items():
            assert scaled_error(got[layer][1][name], grad) < tolerance, name


def projected_loss(client: SideClient, sample: np.ndarray, output_layer: str, projection: np.ndarray) -> float:
    return float(np.sum(forward(client, sample)[output_layer][0].astype(np.float64) * projection))


# ---- run_layer ---------------------------------------------------------------------------

@pytest.mark.parametrize("env, fixture", [("theano", "k2_bn_dropout_functional"), ("theano-keras1", "k1_lstm_merge"),
                                          *[(env, "k2_bn_dropout_functional") for env in KERAS3_ENVS],
                                          ("tensorflow", "k2_lstm")])
def test_run_layer_on_its_forward_inputs_gives_its_forward_outputs(side, env, fixture):
    client = side(env)
    layers = load(client, fixture)
    sample = sample_of(fixture)
    outputs = forward(client, sample)
    for layer in layers:
        inputs = [sample if source.startswith("input:") else outputs[source][0] for source in layer["inbound"]]
        alone = client.run_layer(layer["name"], inputs)
        assert len(alone) == len(outputs[layer["name"]])
        for got, expected in zip(alone, outputs[layer["name"]]):
            assert got.shape == expected.shape and scaled_error(got, expected) < 1e-5, layer["name"]


@pytest.mark.parametrize("env", ["theano", "tensorflow"])
def test_run_layer_wants_one_array_per_input_tensor(side, env):
    client = loaded(side, env, "k2_bn_dropout_functional")
    with pytest.raises(InputError, match="takes 2 input"):
        client.run_layer("add_1", [np.zeros((4, 10, 10, 8), np.float32)])


# ---- weights and set_weights -------------------------------------------------------------

@pytest.mark.parametrize("env", ["theano", *KERAS3_ENVS])
def test_set_weights_then_weights_round_trips(side, env):
    client = loaded(side, env, "k2_bn_dropout_functional")
    named = client.weights("batch_normalization_1")
    assert [name for name, _ in named] == [f"batch_normalization_1/{w}"
                                           for w in ("gamma", "beta", "moving_mean", "moving_variance")]
    replaced = [np.random.RandomState(i).uniform(0.5, 2.0, value.shape).astype(value.dtype)
                for i, (_, value) in enumerate(named)]
    client.set_weights("batch_normalization_1", replaced)
    for (_, got), sent in zip(client.weights("batch_normalization_1"), replaced):
        np.testing.assert_array_equal(got, sent)
    with pytest.raises(InputError, match="weights of shapes"):
        client.set_weights("batch_normalization_1", replaced[:2])


def test_the_flipped_kernel_makes_tensorflow_compute_theanos_conv(side):
    """Keras 3 loads a Theano-trained kernel unflipped: reversing its spatial axes is the fix."""
    sample = sample_of("k2_vgg_channels_first")
    theano_conv = forward(loaded(side, "theano", "k2_vgg_channels_first"), sample)["conv2d_1"][0]
    tensorflow = loaded(side, "tensorflow", "k2_vgg_channels_first")
    (_, kernel), (_, bias) = tensorflow.weights("conv2d_1")   # (rows, cols, in, out)
    assert scaled_error(tensorflow.run_layer("conv2d_1", [sample])[0], theano_conv) > 0.1
    tensorflow.set_weights("conv2d_1", [kernel[::-1, ::-1], bias])
    assert scaled_error(tensorflow.run_layer("conv2d_1", [sample])[0], theano_conv) < 1e-5


# ---- backward ----------------------------------------------------------------------------

FD_FIXTURE = "k2_bn_dropout_functional"   # Conv2D, BatchNormalization, Add, Concatenate, Dense
# layer -> index of the weight checked: kernels, and the moving variance (which enters nonlinearly)
FD_WEIGHTS = {"conv2d_1": 0, "batch_normalization_1": 3, "conv2d_3": 0, "dense_1": 0}
FD_STEP = 1e-3


@pytest.mark.parametrize("env", ["theano", *KERAS3_ENVS])
def test_weight_gradients_agree_with_central_differences(side, env):
    """For each weight w, the derivative along a random unit direction d (all coordinates at
    once): (L(w + h d) - L(w - h d)) / 2h, in float64 from float32 outputs, against <dL/dw, d>.
    The tolerance is relative to |dL/dw|: a gradient wrong by a few percent anywhere fails it,
    while ReLU kinks crossed by the step and float32 rounding stay within it (measured ~3e-4)."""
    client = loaded(side, env, FD_FIXTURE)
    sample = sample_of(FD_FIXTURE)
    projection = projection_for(forward(client, sample)["dense_1"][0])
    grads = backward(client, sample, projection)
    for layer, index in FD_WEIGHTS.items():
        named = client.weights(layer)
        weights, name = [value for _, value in named], named[index][0]
        direction = np.random.RandomState(index).standard_normal(weights[index].shape)
        direction /= np.linalg.norm(direction)
        losses = []
        for sign in (1, -1):
            moved = list(weights)
            moved[index] = (weights[index] + sign * FD_STEP * direction).astype(weights[index].dtype)
            client.set_weights(layer, moved)
            losses.append(projected_loss(client, sample, "dense_1", projection))
        client.set_weights(layer, weights)
        finite_difference = (losses[0] - losses[1]) / (2 * FD_STEP)
        gradient = grads[layer][1][name]
        analytic = float(np.sum(gradient * direction))
        assert abs(finite_difference - analytic) <= 1e-3 * np.linalg.norm(gradient), name


@pytest.mark.parametrize("env", ["theano", *KERAS3_ENVS])
def test_output_gradients_follow_the_chain_rule(side, env):
    """d loss / d model output is the projection; the (linear) convolutions' bias gradient is
    their output gradient summed over all but the channel axis; both branches of an Add get the
    Add's output gradient; the softmax Dense's weight gradients follow from its input and output."""
    client = loaded(side, env, FD_FIXTURE)
    sample = sample_of(FD_FIXTURE)
    outputs = forward(client, sample)
    projection = projection_for(outputs["dense_1"][0])
    grads = backward(client, sample, projection)
    assert list(grads) == list(outputs)
    np.testing.assert_allclose(grads["dense_1"][0][0], projection, rtol=1e-6)
    for layer in ("conv2d_1", "conv2d_2", "conv2d_3"):
        output_grad = grads[layer][0][0]
        summed = output_grad.reshape(-1, output_grad.shape[-1]).sum(axis=0)
        assert scaled_error(grads[layer][1][f"{layer}/bias"], summed) < 1e-5, layer
    for branch in ("conv2d_2", "conv2d_3"):
        np.testing.assert_allclose(grads[branch][0][0], grads["add_1"][0][0], rtol=1e-6)
    probabilities = outputs["dense_1"][0].astype(np.float64)
    logits_grad = probabilities * (projection - np.sum(projection * probabilities, axis=1, keepdims=True))
    dense_input = outputs["global_average_pooling2d_1"][0].astype(np.float64)
    assert scaled_error(grads["dense_1"][1]["dense_1/kernel"], dense_input.T @ logits_grad) < 1e-5
    assert scaled_error(grads["dense_1"][1]["dense_1/bias"], logits_grad.sum(axis=0)) < 1e-5


@pytest.mark.parametrize("env, fixture", [("theano", FD_FIXTURE), ("theano-keras1", "k1_lstm_merge"),
                                          *[(env, FD_FIXTURE) for env in KERAS3_ENVS], ("tensorflow", "k2_lstm")])
def test_each_layers_backward_alone_gives_the_models_own_gradients(side, env, fixture):
    """layer_backward on the layer's forward inputs and its output gradient as the last backward kept them
    ('outputs' with gradients): the model's weight gradients, and, summed over a layer's consumers, its
    output gradient (the chain rule, layer by layer)."""
    client = side(env)
    layers = load(client, fixture)
    sample = sample_of(fixture)
    outputs = forward(client, sample)
    grads = backward(client, sample, projection_for(outputs[layers[-1]["name"]][0]))
    kept = client.output_gradients([layer["name"] for layer in layers])
    summed: dict[str, np.ndarray] = {}
    for layer in layers:
        name = layer["name"]
        assert all(np.array_equal(x, y) for x, y in zip(kept[name], grads[name][0])), name
        inputs = [sample if source.startswith("input:") else outputs[source][0] for source in layer["inbound"]]
        input_grads, weight_grads = client.layer_backward(name, inputs, kept[name])
        assert [w for w, _ in weight_grads] == list(grads[name][1]), name
        for weight, grad in weight_grads:
            assert scaled_error(grad, grads[name][1][weight]) < 1e-5, weight
        for source, grad in zip(layer["inbound"], input_grads):
            assert grad.shape == inputs[layer["inbound"].index(source)].shape, name
            summed[source] = summed.get(source, 0) + grad.astype(np.float64)
    for layer in layers[:-1]:
        if layer["name"] in summed:
            assert scaled_error(summed[layer["name"]], grads[layer["name"]][0][0]) < 1e-5, layer["name"]


@pytest.mark.parametrize("env", ["theano", "tensorflow"])
def test_layer_backward_wants_one_array_per_input_and_one_gradient_per_output(side, env):
    client = loaded(side, env, FD_FIXTURE)
    x = np.zeros((4, 10, 10, 8), np.float32)
    with pytest.raises(InputError, match="takes 2 input"):
        client.layer_backward("add_1", [x], [x])
    with pytest.raises(InputError, match="1 output"):
        client.layer_backward("add_1", [x, x], [x, x])


@pytest.mark.parametrize("env", ["theano", *KERAS3_ENVS])
def test_forward_backward_gives_forward_then_backward_from_one_call(side, env):
    """Every layer's outputs (kind "output"), then every layer's gradients (kind "gradient"), as
    'forward' and 'backward' give them; the outputs are kept for 'outputs' (isolation asks for them)."""
    client = loaded(side, env, FD_FIXTURE)
    sample = sample_of(FD_FIXTURE)
    outputs = forward(client, sample)
    projection = projection_for(outputs["dense_1"][0])
    expected = backward(client, sample, projection)
    parts = streamed(client, "forward_backward", {"x0": sample, "p0": projection})
    kinds = [header["kind"] for header, _ in parts]
    assert kinds == ["output"] * len(outputs) + ["gradient"] * len(expected)
    got_outputs = {header["layer"]: [arrays[k] for k in sorted(arrays, key=int)] for header, arrays in parts
                   if header["kind"] == "output"}
    assert list(got_outputs) == list(outputs)
    for layer, values in outputs.items():
        assert [v.shape for v in got_outputs[layer]] == [v.shape for v in values], layer
        for got, want in zip(got_outputs[layer], values):
            assert scaled_error(got, want) < 1e-5, layer
    got_grads = {header["layer"]: (vocabulary.unpack(arrays, vocabulary.OUTPUT_GRADIENTS),
                                   dict(zip(header["weights"], vocabulary.unpack(arrays, vocabulary.WEIGHT_GRADIENTS))))
                 for header, arrays in parts if header["kind"] == "gradient"}
    assert_same_gradients(got_grads, expected, 1e-5)
    kept = client.pool.call(client.side, "outputs", {"layers": ["conv2d_1"]})[1]["conv2d_1:0"]
    np.testing.assert_array_equal(kept, got_outputs["conv2d_1"][0])


def test_keras3_backends_agree_on_gradients(side):
    """tensorflow, jax and torch on k3_cnn (Conv2D, BatchNormalization, residual Add, softmax)."""
    sample = sample_of("k3_cnn")
    reference = loaded(side, "tensorflow", "k3_cnn")
    projection = projection_for(forward(reference, sample)["probs"][0])
    expected = backward(reference, sample, projection)
    for env in ("jax", "torch"):
        assert_same_gradients(backward(loaded(side, env, "k3_cnn"), sample, projection), expected, 1e-5)


def test_theano_and_tensorflow_gradients_agree_once_the_kernel_is_flipped(side):
    """k2_imdb_cnn (Embedding, Conv1D, Dense): with the Conv1D kernel reversed on the
    tensorflow side, every layer's gradients match Theano's (the kernel's reversed back)."""
    sample = sample_of("k2_imdb_cnn")
    theano = loaded(side, "theano", "k2_imdb_cnn")
    projection = projection_for(forward(theano, sample)["activation_2"][0])
    expected = backward(theano, sample, projection)
    tensorflow = loaded(side, "tensorflow", "k2_imdb_cnn")
    kernel, bias = [value for _, value in tensorflow.weights("conv1d_1")]
    tensorflow.set_weights("conv1d_1", [kernel[::-1], bias])
    got = backward(tensorflow, sample, projection)
    got["conv1d_1"][1]["conv1d_1/kernel"] = got["conv1d_1"][1]["conv1d_1/kernel"][::-1]
    assert_same_gradients(got, expected, 1e-5)


@pytest.mark.parametrize("env", ["theano", "theano-keras1", *KERAS3_ENVS])
def test_a_named_loss_on_labels_is_differentiated_as_training_computes_it(side, env):
    """mse = mean over the batch and the last axis of (output - label)^2: its gradient with respect
    to the model output is 2 (output - label) / (batch * units) on every backend, Keras 1.2.2 too."""
    fixture = "k1_lstm_merge" if env == "theano-keras1" else FD_FIXTURE
    client = loaded(side, env, fixture)
    sample = sample_of(fixture)
    outputs = forward(client, sample)
    last = list(outputs)[-1]
    output = outputs[last][0].astype(np.float64)
    labels = np.eye(output.shape[1], dtype=np.float32)[np.arange(len(output)) % output.shape[1]]
    grads = backward(client, sample, None, loss="mse", labels=labels)
    assert scaled_error(grads[last][0][0], 2 * (output - labels) / output.size) < 1e-5


def test_theano_and_tensorflow_agree_on_a_named_loss_once_the_kernel_is_flipped(side):
    """k2_imdb_cnn (sigmoid output) with binary_crossentropy on labels, Keras 2.3.1 on Theano
    against Keras 3 on TensorFlow: every layer's gradients match."""
    sample = sample_of("k2_imdb_cnn")
    labels = np.array([[1], [0], [0], [1]], np.float32)
    expected = backward(loaded(side, "theano", "k2_imdb_cnn"), sample, None, "binary_crossentropy", labels)
    tensorflow = loaded(side, "tensorflow", "k2_imdb_cnn")
    kernel, bias = [value for _, value in tensorflow.weights("conv1d_1")]
    tensorflow.set_weights("conv1d_1", [kernel[::-1], bias])
    got = backward(tensorflow, sample, None, "binary_crossentropy", labels)
    got["conv1d_1"][1]["conv1d_1/kernel"] = got["conv1d_1"][1]["conv1d_1/kernel"][::-1]
    assert_same_gradients(got, expected, 1e-5)


@pytest.mark.parametrize("env", ["theano", "tensorflow"])
def test_a_loss_needs_one_label_array_per_output_and_a_known_name(side, env):
    client = loaded(side, env, FD_FIXTURE)
    sample = sample_of(FD_FIXTURE)
    with pytest.raises(InputError, match="one label array per model output"):
        client.pool.call(env, "backward", {"loss": "mse"}, {"x0": sample})
    with pytest.raises(InputError, match="no loss 'not_a_loss'"):
        client.pool.call(env, "backward", {"loss": "not_a_loss"}, {"x0": sample, "y0": np.zeros((4, 5), np.float32)})
