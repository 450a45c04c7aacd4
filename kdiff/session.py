"""The session stage of a diff: both sides' environments made, their workers started, the model
loaded on each, the layers aligned, the tolerances and the layout bridge settled. The stages
that then run in it (kdiff.comparison) may run many times: the diagnosis re-runs them after each
proven fix, and training once per step."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdiff.alignment import LayerPair, align_layers
from kdiff.element_maps import GradientScale, find_channel_scale, find_element_map, find_row_permutation, find_scaled_map
from kdiff.environments import backend_spec, ensure_env, env_for, kdiff_home
from kdiff.errors import InputError, UsageError
from kdiff.gradients import NamedLoss, output_layers
from kdiff.layout_client import LayoutClient
from kdiff.layouts import LayoutBridge, layout_bridge
from kdiff.metrics import Tolerance
from kdiff.model_checks import sample_warnings
from kdiff.model_files import inspect_model, load_labels, load_sample
from kdiff.model_inputs import ModelInputs
from kdiff.preflight import writable_folder
from kdiff.progress import Progress
from kdiff.report import BackendInfo, DiffReport
from kdiff.tolerances import Tolerances, derive
from kdiff import warm
from kdiff.protocol import vocabulary
from kdiff.protocol.keys import ClientKeys, is_loopback
from kdiff.worker_calls import SideClient
from kdiff.workers import Timeouts, WorkerPool


@dataclass(frozen=True)
class Side:
    name: str                  # "a" or "b"
    backend: str
    model: str
    weights: str | None = None
    python: str | None = None  # a user's interpreter instead of kdiff's environment
    worker_module: str | None = None  # tests only: a stand-in worker class (see tests/fake_worker.py)
    worker_options: dict = field(default_factory=dict)
    layout: str | None = None  # build the model in this memory layout (channels_first/channels_last): --b-layout
    endpoint: str | None = None  # a worker listening there (kdiff worker --listen, on another host): --b BACKEND@ENDPOINT


@dataclass(frozen=True)
class DiffOptions:
    tolerance: Tolerance = Tolerance()  # every layer's, unless derived_tolerances
    derived_tolerances: bool = False  # derive each layer's tolerance from its dtype and arithmetic (kdiff.tolerances)
    custom_objects: str | None = None
    trust_lambda_bytecode: bool = False
    dump_dir: str | None = None
    timeouts: Timeouts = Timeouts()
    write_fixed: str | None = None   # a folder for side B's model with every proven fix applied
    gradients: bool = True           # also compare every layer's gradients (kdiff.gradients)
    isolate: bool = False            # also run each of side B's layers alone on side A's inputs (kdiff.isolation)
    noise_floor: bool = True         # first run each side twice on the same input: does it agree with itself?
    loss: str | None = None          # differentiate this Keras loss on `labels` instead of a projection
    labels: tuple[str, ...] = ()     # .npy files, one per model output
    warm: bool = False               # use (and leave behind) warm workers: kdiff.warm
    keys: str | None = None          # a 'kdiff keys' folder, for sides on another host (Side.endpoint)


class DiffSession:
    """Both workers started and the model loaded on each; ``compare`` may then run many times."""

    def __init__(self, a: Side, b: Side, options: DiffOptions = DiffOptions(), progress: Progress = Progress()):
        self.sides = (a, b)
        self.options = options
        self.progress = progress
        self.models = {side.name: inspect_model(side.model, side.weights, options.custom_objects)
                       for side in self.sides}
        # Every side's backend and environment is known to be valid before any is built.
        for side in self.sides:
            if side.worker_module is None:
                backend_spec(side.backend)
        self.envs = {side.name: "" if side.python or side.endpoint else env_for(side.backend,
                                                                                 self.models[side.name].keras_major)
                     for side in self.sides}
        self.leases: list = []  # warm workers' slots this session holds (kdiff.warm)
        self.pythons: dict[str, str] = {}
        self.pool: WorkerPool | None = None
        self.weight_maps: dict[str, list] = {}  # side A's layer -> per weight, how side B reorders it
        self.bridge = LayoutBridge()            # how side B's arrays are moved to side A's layout (kdiff.layouts)
        self.tolerances = Tolerances.from_user(options.tolerance)  # per layer once derived (start)
        self.named_loss: NamedLoss | None = None  # the loss the backward diff differentiates (else a projection)
        self.input_warnings: list[str] = list(dict.fromkeys(
            warning for side in self.sides for warning in self.models[side.name].warnings))

    def __enter__(self) -> "DiffSession":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        a, b = self.sides
        for side in self.sides:
            if side.python or side.endpoint:
                self.pythons[side.name] = side.python or f"on {side.endpoint}"
            else:
                self.progress.stage(f"environment {self.envs[side.name]}")
                self.pythons[side.name] = str(ensure_env(self.envs[side.name], self.progress.log))
        self.pool = pool = WorkerPool(self.options.timeouts)
        self.progress.stage(f"starting workers: {a.backend} and {b.backend}")
        for side in self.sides:
            self._start_worker(side)
        self.hellos = {side.name: pool.wait_hello(side.name) for side in self.sides}
        for side in self.sides:
            if side.endpoint:
                self._check_generation(side)
        self.progress.stage("loading the model on both sides")
        described = pool.replies({side.name: pool.send(side.name, "load", *_load_args(side, self.options))
                                  for side in self.sides})
        reused = [side.backend for side in self.sides if described[side.name].get("reused")]
        if reused:
            self.progress.log(f"warm: {' and '.join(reused)} had this model loaded already")
        a_layout, b_layout = self.models["a"].data_format, b.layout or self.models["b"].data_format
        self.pairs: list[LayerPair] = align_layers(described["a"]["layers"], described["b"]["layers"],
                                                   a_layout if a_layout and b_layout and a_layout != b_layout else "")
        self.a_layers = {layer["name"]: layer for layer in described["a"]["layers"]}
        self.b_layers = {layer["name"]: layer for layer in described["b"]["layers"]}
        if self.options.derived_tolerances:
            self.tolerances = derive(self.pairs, described["a"].get("inputs") or [])
        self.clients = {side.name: SideClient(pool, side.name) for side in self.sides}
        self.bridge = layout_bridge(self.pairs, self.models["a"], self.models["b"], b.layout,
                                    described["a"].get("inputs") or [], described["b"].get("inputs") or [])
        if self.bridge.active:  # the diagnosis and isolation then see side B in side A's layout
            self.clients["b"] = LayoutClient(self.clients["b"], self.bridge,
                                             {name: list(layer.get("inbound", ())) for name, layer in self.b_layers.items()})
        outputs = len(output_layers(self.a_layers))
        if self.named_loss is not None and len(self.named_loss.labels) != outputs:
            raise InputError("labels-count", f"the loss {self.named_loss.name!r} needs one label file per model "
                             f"output: the model has {outputs}, {len(self.named_loss.labels)} given",
                             "pass --labels once per output, in the order of the model's outputs")

    def _start_worker(self, side: Side) -> None:
        """Side's worker: reached where it listens (another host), a warm one (--warm), or started for this run."""
        pool = self.pool
        if side.endpoint:
            pool.connect(side.name, side.backend, side.endpoint, client_keys(self.options.keys, side.endpoint))
            pool.workers[side.name].sends_files = True
            return
        layout = {"layout": side.layout} if side.layout else {}
        options = {**worker_options(side.backend), **layout, **side.worker_options}
        lease = warm.lease(side.name, side.backend, self.pythons[side.name], options, side.worker_module) \
            if self.options.warm else None
        if lease is None:
            pool.spawn(side.name, side.backend, self.pythons[side.name], options, side.worker_module)
            return
        self.leases.append(lease)
        endpoint = lease.endpoint if lease.process is None else \
            warm.wait_listening(lease, time.monotonic() + self.options.timeouts.start)
        if not endpoint:
            lease.release()
            self.leases.remove(lease)
            self.progress.log(f"warm: the {side.backend} worker did not start (see {lease.log_path}); "
                              "starting one for this run")
            pool.spawn(side.name, side.backend, self.pythons[side.name], options, side.worker_module)
            return
        pool.connect(side.name, side.backend, endpoint, process=lease.process, pid=lease.pid,
                     log_path=lease.log_path, take_over=True)

    def _check_generation(self, side: Side) -> None:
        """A theano worker on another host runs one Keras generation: the one the side's files were written by."""
        keras = str((self.hellos[side.name].get("versions") or {}).get("keras", ""))
        wanted = self.models[side.name].keras_major
        if side.backend == "theano" and keras[:1].isdigit() and wanted in (1, 2) and int(keras[:1]) != wanted:
            raise InputError("worker-keras-generation", f"side {side.name}'s worker at {side.endpoint} runs Keras "
                             f"{keras}, and its model was written by Keras {wanted}",
                             f"start that worker with 'kdiff worker --listen ... --backend theano --keras {wanted}'")

    def pair_of(self, a_name: str) -> LayerPair | None:
        """The pair holding side A's layer of that name."""
        return next((pair for pair in self.pairs if pair.a is not None and pair.a["name"] == a_name), None)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for lease in self.leases:
            lease.release()
        self.leases = []

    def load_sample(self, sample_path: str) -> np.ndarray:
        """The sample, checked; and the labels of a named loss, checked against it and the model."""
        sample = load_sample(sample_path, self.models["a"])
        self.input_warnings += sample_warnings(sample, self.models["a"].integer_input, Path(sample_path).name)
        for warning in self.input_warnings:
            self.progress.log(f"warning: {warning}")
        if self.options.loss is not None:
            self.named_loss = NamedLoss(self.options.loss, tuple(load_labels(list(self.options.labels),
                                                                             sample.shape[0])),
                                        tuple(self.options.labels))
        return sample

    def inputs(self, sample: np.ndarray | list | ModelInputs) -> ModelInputs:
        """The sample as each side is fed it (side B's moved to its layout)."""
        return ModelInputs.of(sample, self.bridge)

    def compare(self, sample: np.ndarray | list | ModelInputs, sample_path: str = "", gradients: bool | None = None,
                noise_floor: bool | None = None) -> DiffReport:
        """Forward diff of every layer; with ``gradients`` the backward diff too, and with ``noise_floor``
        a self-check of each side first (both default to the session's options): kdiff.comparison."""
        from kdiff.comparison import compare

        return compare(self, self.inputs(sample), sample_path,
                       self.options.gradients if gradients is None else gradients,
                       self.options.noise_floor if noise_floor is None else noise_floor)

    def backend_infos(self) -> tuple[BackendInfo, BackendInfo]:
        """What each side runs: backend, versions, device, interpreter, environment, files, layout."""
        return tuple(
            BackendInfo(side=side.name, name=side.backend, versions=self.hellos[side.name].get("versions", {}),
                        device=self.hellos[side.name].get("device", ""), python=self.pythons[side.name],
                        env=self.envs[side.name], model=side.model, weights=side.weights or "",
                        layout=(self.bridge.b_layout if side.name == "b" else self.bridge.a_layout) or "")
            for side in self.sides
        )

    def refresh_weight_maps(self, a_layers: list[str]) -> None:
        """Find how side B holds each of these layers' weights: A's, reordered (or not at all)."""
        for name in a_layers:
            pair = self.pair_of(name)
            if pair is None or pair.b is None:
                continue
            a_values = [value for _, value in self.clients["a"].weights(name)]
            b_values = [value for _, value in self.clients["b"].weights(pair.b["name"])]
            maps = [find_element_map(a, b, within_zeros=True) if a.shape != b.shape or not np.array_equal(a, b) else None
                    for a, b in zip(a_values, b_values)]
            inbound = list(pair.b.get("inbound", ()))  # a Dense whose rows follow a reordered Flatten
            maps = [m if m is not None or a.shape != b.shape else self.bridge.weight_map(inbound, a, b)
                    for m, a, b in zip(maps, a_values, b_values)]
            before_flatten = self._before_flatten(pair)  # a right port's Dense rows, reordered for the other layout
            maps = [m if m is not None or before_flatten is None else find_row_permutation(a, b, before_flatten)
                    for m, a, b in zip(maps, a_values, b_values)]
            if maps and maps[0] is None:
                maps = self._folded(pair, a_values, b_values) or _scaled(a_values, b_values) or maps
            maps += [None] * (len(a_values) - len(maps))  # (weights side B does not hold: none to map)
            self.weight_maps[name] = [m if m is not None and not m.is_identity else None for m in maps]

    def _folded(self, pair, a_values: list, b_values: list) -> list | None:
        """A group whose BatchNormalization one side has folded into the layer before it: the kernel scaled
        per output channel (kdiff.element_maps.GradientScale), the same scale for every weight's gradient."""
        folded = [(side, member["name"]) for side in "ab" for member in pair.members(side)
                  if member["class_name"] == "BatchNormalization"]
        if len(folded) != 1 or not a_values or not b_values:
            return None  # (both sides have it, or neither: nothing is folded)
        side, batch_norm = folded[0]
        statistics = [value for _, value in self.clients[side].weights(batch_norm)]
        if not statistics:
            return None
        scale = find_channel_scale(a_values[0], b_values[0], int(statistics[-1].size))
        if scale is None:
            return None
        return [scale if a.size == statistics[-1].size or a is a_values[0] else None for a in a_values]

    def _before_flatten(self, pair) -> tuple | None:
        """For a Dense fed by a Flatten on side A: the shape (without batch) of what the Flatten flattens."""
        inbound = list(pair.inbound("a"))
        flatten = self.a_layers.get(inbound[0]) if len(inbound) == 1 else None
        if flatten is None or flatten["class_name"] != "Flatten" or len(flatten.get("inbound") or []) != 1:
            return None
        source = flatten["inbound"][0]
        shapes = (self.a_layers[source].get("output_shapes") or [None])[0] if source in self.a_layers else None
        return tuple(shapes[1:]) if shapes and None not in shapes[1:] else None

    def noise_floor(self, sample: np.ndarray | list | ModelInputs) -> dict[str, dict[str, float]]:
        """Both sides at once run the sample (or samples, one per model input) twice; the layers where a
        side disagrees with itself."""
        self.progress.stage("running each side twice: does it agree with itself?")
        inputs = self.inputs(sample)
        replies = self.pool.replies({side.name: self.pool.send(side.name, "self_check", arrays=inputs.pack(side.name))
                                     for side in self.sides})
        return {side: reply.get("differing", {}) for side, reply in replies.items()}


def worker_options(backend: str) -> dict:
    """The options a backend's worker is started with (Theano's: its compile folder, which must be writable)."""
    if backend != "theano":
        return {}
    compiledir = kdiff_home() / "theano-compiledir"  # Theano compiles its ops into it: it must be writable
    try:
        writable_folder(compiledir, "Theano's compile folder")
        compiledir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("kdiff-home-unwritable", f"Theano's compile folder {compiledir} cannot be made "
                         f"({exc.strerror or exc}) (in KDIFF_HOME)",
                         "make that folder writable, or point KDIFF_HOME at a writable folder with free space") from exc
    except UsageError as exc:
        raise InputError("kdiff-home-unwritable", f"{exc.message} (in KDIFF_HOME)",
                         "make that folder writable, or point KDIFF_HOME at a writable folder with free space") from exc
    return {"compiledir": str(compiledir)}


def _load_args(side: Side, options: DiffOptions) -> tuple[dict, dict]:
    """The 'load' call's arguments, and its arrays: for a worker on another host, the files' bytes."""
    paths = {"model": side.model, "weights": side.weights, "custom_objects": options.custom_objects}
    args = {role: str(Path(path).resolve()) if path else None for role, path in paths.items()}
    args["trust_lambda_bytecode"] = options.trust_lambda_bytecode
    if not side.endpoint:
        return args, {}
    args["layout"] = side.layout  # a worker on another host was started for any layout: it builds in this one
    return args, vocabulary.pack_files({role: Path(path).read_bytes() for role, path in paths.items() if path})


def client_keys(folder: str | None, endpoint: str):
    """The CURVE keys to reach a worker at ``endpoint`` with (None on loopback without --keys)."""
    if folder is None:
        if not is_loopback(endpoint):
            raise UsageError("keys-needed", f"{endpoint} is not a loopback address: a worker there listens only "
                             "behind CURVE keys", "make keys with 'kdiff keys DIR', start the worker with "
                             "'kdiff worker --listen ... --keys DIR', and pass --keys DIR here too")
        return None
    try:
        return ClientKeys.load(folder)
    except (OSError, ValueError) as exc:
        raise UsageError("keys-unreadable", f"--keys {folder}: {exc}",
                         "pass the folder 'kdiff keys DIR' wrote (client.key_secret, probe.key)") from exc


def _scaled(a_values: list, b_values: list) -> list | None:
    """A layer whose kernels side B holds scaled per output channel (after a fix that rescaled them, e.g. for
    hard_sigmoid's other definition; perhaps flipped as well), each kernel's gradient compared through its
    scale, a 1-D weight's (a bias) through the first kernel's. Only asked of layers whose values match (or
    were just fixed), where the two are the same function in other parameters."""
    if len(a_values) != len(b_values) or not a_values:
        return None
    first = find_scaled_map(a_values[0], b_values[0])
    if first is None:
        return None
    maps = []
    for a, b in zip(a_values, b_values):
        if a.ndim >= 2:
            maps.append(first if a is a_values[0] else find_scaled_map(a, b))
        else:
            maps.append(GradientScale(first.ratio.reshape(-1)) if a.size == first.ratio.size else None)
    return maps
