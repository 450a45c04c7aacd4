"""Full-model HDF5 files (`model.save('model.h5')` of Keras 1.2, Keras 2.x and tf.keras 2.x), read by the
coordinator without any framework: the architecture (root attribute `model_config`, the JSON
`model.to_json()` would write, without `keras_version` in Keras 1's), the file's root `keras_version` and
`backend`, and the training configuration (`training_config`: the optimizer's class and settings, the loss)
of a model saved after compile(). The weights are the `model_weights` group; workers read them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdiff.errors import InputError
from kdiff.model_checks import parse_model_json

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# kdiff train's optimizer names (backends/common/training_common.OPTIMIZER_CLASSES), by the class names files state
OPTIMIZER_NAMES = {"sgd": "sgd", "adam": "adam", "rmsprop": "rmsprop", "adagrad": "adagrad", "adadelta": "adadelta",
                   "adamax": "adamax", "nadam": "nadam"}
# Optimizer settings taken from a file, under kdiff's names (Keras 1 and Keras <= 2.2 wrote 'lr'); the rest
# (decay, schedule_decay, clipping, tf.keras's EMA and jit settings, name) are left out and said so.
OPTIMIZER_SETTINGS = {"lr": "learning_rate", "learning_rate": "learning_rate", "momentum": "momentum",
                      "nesterov": "nesterov", "beta_1": "beta_1", "beta_2": "beta_2", "epsilon": "epsilon",
                      "rho": "rho", "amsgrad": "amsgrad"}
# tf.keras optimizer settings that do not change a step (or only when set, which then is said)
QUIET_SETTINGS = {"name", "ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer"}


@dataclass(frozen=True)
class FullModelFile:
    model_config: dict        # the architecture, with the file's keras_version filled in where it said none
    keras_version: str        # the root attribute ("" when absent)
    backend: str              # the root attribute ("" when absent: Keras 1)
    training_config: dict | None
    has_weights: bool         # a model_weights group


@dataclass(frozen=True)
class TrainingSetup:
    """What `kdiff train` takes from a file's training_config."""
    optimizer: str            # kdiff's optimizer name ("adam")
    settings: dict            # kdiff's names ("learning_rate": 0.01)
    left_out: tuple           # settings of the file not taken, "name=value"
    loss: str                 # a Keras loss name


def is_hdf5(path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tobytes") and getattr(value, "dtype", None) is not None and value.dtype.kind == "S":
        return value.tobytes().decode("utf-8", "replace")
    return str(value)


def read_full_model(path) -> FullModelFile:
    """The architecture and root attributes of an HDF5 model file; InputError for one that holds weights only."""
    import h5py  # kdiff's own dependency

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
            has_weights = "model_weights" in handle
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputError("model-unreadable", f"{path.name} is not a readable HDF5 file ({exc})",
                         "the file may be truncated; write it again with model.save('model.h5')") from exc
    if "model_config" not in attrs:
        raise InputError("model-h5-weights-only", f"{path.name} holds weights only, no architecture (no "
                         "'model_config' attribute)", f"pass the model's JSON as MODEL and {path.name} as WEIGHTS, or "
                         "a file written by model.save('model.h5')")
    config = parse_model_json(_text(attrs["model_config"]).encode("utf-8"), f"{path.name}'s model_config")
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise InputError("model-json-shape", f"{path.name}'s model_config is not a Keras model description",
                         "expected an object with 'class_name' and 'config', as model.save() writes it")
    version = _text(attrs["keras_version"]) if "keras_version" in attrs else ""
    if version and not config.get("keras_version"):
        config = {**config, "keras_version": version}   # Keras 1.2 wrote it beside model_config only
    training = None
    if "training_config" in attrs:
        training = parse_model_json(_text(attrs["training_config"]).encode("utf-8"), f"{path.name}'s training_config")
        training = training if isinstance(training, dict) else None
    return FullModelFile(config, version, _text(attrs["backend"]) if "backend" in attrs else "", training,
                         has_weights)


def written_by_tf_keras(version: str, backend: str) -> bool:
    """A Keras 2 file written by TensorFlow's own Keras (tf.keras, tf_keras: '2.2.4-tf', 2.4 and later), which
    never ran on Theano, rather than by the multi-backend Keras (at most 2.3.1)."""
    if not version.startswith("2.") or backend not in ("", "tensorflow"):
        return False
    if version.endswith("-tf"):
        return True
    parts = version.split(".")
    try:
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (2, 4)
    except (ValueError, IndexError):
        return False


def training_setup(path) -> TrainingSetup | None:
    """The optimizer and loss a full-model file was compiled with, as `kdiff train` names them; None when the
    file has no training configuration. InputError for one kdiff cannot take."""
    model = read_full_model(path)
    config = model.training_config
    if not config:
        return None
    name = Path(path).name
    optimizer = config.get("optimizer_config") or {}
    class_name = str(optimizer.get("class_name", "")).split(">")[-1]     # tf.keras: 'Custom>Adam'
    kdiff_name = OPTIMIZER_NAMES.get(class_name.lower())
    if kdiff_name is None:
        raise InputError("training-config", f"{name} was compiled with the optimizer {class_name or '?'}, which "
                         "kdiff train does not compare", "name one with --optimizer NAME")
    settings, left_out = {}, []
    for key, value in (optimizer.get("config") or {}).items():
        if value is None or value is False or key in QUIET_SETTINGS or (key == "decay" and value == 0):
            continue   # not in use (nesterov, amsgrad, clipping, weight decay, EMA off; decay 0)
        if key in OPTIMIZER_SETTINGS:
            settings[OPTIMIZER_SETTINGS[key]] = _plain(value)
        else:
            left_out.append(f"{key}={_plain(value)}")
    return TrainingSetup(kdiff_name, settings, tuple(left_out), _loss_name(config.get("loss"), name))


def _plain(value):
    """A float32 setting as the file printed it back (0.0010000000474974513 -> 0.001)."""
    if isinstance(value, float):
        return float(f"{value:.7g}")
    return value


def _loss_name(loss, file_name: str) -> str:
    """One Keras loss name: a name, a tf.keras loss object ({'class_name', 'config'}), or the same one for every
    output (a list or a dict by output name)."""
    if isinstance(loss, dict) and "class_name" in loss:
        loss_config = loss.get("config") or {}
        if loss_config.get("from_logits") or loss_config.get("label_smoothing"):
            raise InputError("training-config", f"{file_name}'s loss {loss['class_name']} has from_logits or "
                             "label_smoothing set, which kdiff train's named losses do not take",
                             "name a loss with --loss NAME")
        named = loss_config.get("fn") or loss_config.get("name")
        if isinstance(named, str) and named:
            return named
        return "".join("_" + c.lower() if c.isupper() else c for c in loss["class_name"]).lstrip("_")
    if isinstance(loss, str) and loss:
        return loss
    values = list(loss.values()) if isinstance(loss, dict) else loss if isinstance(loss, list) else []
    names = {_loss_name(value, file_name) for value in values}
    if len(names) == 1:
        return names.pop()
    raise InputError("training-config", f"{file_name}'s training configuration gives no single loss ({loss!r})",
                     "name the loss with --loss NAME")
