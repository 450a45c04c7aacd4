"""Checks of a model's files that need no framework, made by the coordinator before any worker
starts: a model JSON of a sane depth and shape, whose layer configs carry the types Keras needs
(a layer Keras itself would refuse is named here, with what is wrong), and a weights file whose
every dataset is numbers. Values that Keras accepts but that make a comparison meaningless or
surprising (integer or non-finite weights) are warnings, not refusals (``weights_warnings``)."""
from __future__ import annotations

import json
import math
from typing import Any

from kdiff.errors import InputError
from kdiff.protocol.wire import nesting_depth

MAX_JSON_DEPTH = 200  # a model nests a few levels a layer: Keras 3 configs of nested models reach ~30

# Fields whose values are counts (positive integers) in Keras 1, 2 and 3 configs.
COUNT_FIELDS = ("units", "filters", "output_dim", "nb_filter", "input_dim", "nb_row", "nb_col", "filter_length",
                "depth_multiplier", "n", "nb_feature")
# Fields whose values are sizes: a positive integer, a list of them, or null (a pooling's strides).
SIZE_FIELDS = ("kernel_size", "strides", "pool_size", "dilation_rate", "subsample", "pool_length", "stride",
               "subsample_length", "size", "length")
TEXT_FIELDS = ("name", "padding", "border_mode", "data_format", "dim_ordering")
LAYOUTS = {"data_format": {"channels_first", "channels_last"}, "dim_ordering": {"th", "tf", "default"}}
PADDINGS = {"valid", "same", "causal", "full"}
FIELDS_OF_CLASS_NAMES = ("class_name",)


def parse_model_json(raw: bytes, file_name: str) -> Any:
    """The file's JSON, refused when it nests deeper than any model does (checked before parsing)."""
    depth = nesting_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise InputError("model-json-depth", f"{file_name} nests {depth} levels deep, deeper than any Keras model "
                         f"description (at most {MAX_JSON_DEPTH})",
                         "the file may be damaged or not a model; write it again with model.to_json()")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise InputError("model-not-json", f"{file_name} is not a JSON file: {exc}",
                         "pass the architecture written by model.to_json() (or a Keras 3 .keras file)") from exc


def check_layer_config(class_name: str, config: Any, where: str) -> None:
    """A layer's config has the types Keras needs: an InputError naming the layer and the field if not."""
    if not isinstance(config, dict):
        raise InputError("layer-config", f"{where}: its config is {type(config).__name__}, not an object",
                         "the file may be damaged; write it again with model.to_json()")
    name = config.get("name")
    label = f"layer '{name}' ({class_name})" if isinstance(name, str) else f"a {class_name} layer"
    padding_is_text = not class_name.startswith(("ZeroPadding", "Cropping"))
    for field in TEXT_FIELDS if padding_is_text else ("name", "data_format", "dim_ordering"):
        value = config.get(field)
        if value is not None and not isinstance(value, str):
            _refuse(label, field, value, "a string")
    for field, allowed in LAYOUTS.items():
        if isinstance(config.get(field), str) and config[field] not in allowed:
            _refuse(label, field, config[field], " or ".join(sorted(allowed)))
    for field in ("padding", "border_mode") if padding_is_text else ():
        if isinstance(config.get(field), str) and config[field] not in PADDINGS:
            _refuse(label, field, config[field], " or ".join(sorted(PADDINGS)))
    for field in COUNT_FIELDS:
        if field in config and not _positive_int(config[field]):
            if field in ("output_dim", "input_dim") and config[field] is None:
                continue  # (Keras 1 layers and Keras 2's Highway/MaxoutDense write input_dim: null unless given)
            _refuse(label, field, config[field], "a positive integer")
    for field in SIZE_FIELDS:
        value = config.get(field)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if not values or not all(_positive_int(v) for v in values):
            _refuse(label, field, value, "a positive integer or a list of them")
    for field in ("batch_input_shape", "batch_shape", "input_shape"):
        shape = config.get(field)
        if shape is None:
            continue
        if not isinstance(shape, list) or not all(d is None or _positive_int(d) or d == 0 for d in shape):
            _refuse(label, field, shape, "a list of sizes (integers, or null for any)")
    for field in ("rate", "p", "dropout", "recurrent_dropout", "momentum", "epsilon"):
        value = config.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            _refuse(label, field, value, "a finite number")
    wrapped = config.get("layer")
    if wrapped is not None and (not isinstance(wrapped, dict) or not isinstance(wrapped.get("class_name"), str)):
        raise InputError("layer-config", f"{label}: the layer it wraps is not a layer description "
                         f"(its 'class_name' is {_shown(wrapped.get('class_name') if isinstance(wrapped, dict) else wrapped)})",
                         "the file may be damaged; write it again with model.to_json()")


def check_unique_names(names: list, container: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise InputError("layer-config", f"{container} has two layers named '{name}'",
                             "Keras needs every layer of a model to have its own name; rename one and save again")
        seen.add(name)


def weights_warnings(handle) -> list[str]:
    """Read every dataset of an open h5py file: an InputError for one that holds no numbers (a string
    dataset), warnings for integer weights and for weights that hold NaN or Inf."""
    import h5py  # kdiff's own dependency
    import numpy as np

    found: dict[str, list[str]] = {"integer": [], "non-finite": []}

    def visit(path: str, item) -> None:
        if not isinstance(item, h5py.Dataset):
            return
        kind = item.dtype.kind
        if kind not in "fiub":
            raise InputError("weights-not-numbers", f"the weights file holds '{path}', a dataset of {item.dtype} "
                             "values, not numbers", "write the weights again with model.save_weights(...)")
        if kind in "iub" and item.ndim > 0:
            found["integer"].append(path)
        elif kind == "f":
            values = item[()]
            if not np.all(np.isfinite(values)):
                found["non-finite"].append(path)

    handle.visititems(visit)
    warnings = []
    if found["integer"]:
        warnings.append(f"{len(found['integer'])} weight array(s) hold integers ({_listed(found['integer'])}): "
                        "each framework converts them to its float type on load")
    if found["non-finite"]:
        warnings.append(f"{len(found['non-finite'])} weight array(s) hold NaN or Inf ({_listed(found['non-finite'])}):"
                        " every output they reach is NaN or Inf, and frameworks propagate those differently")
    return warnings


def check_listed_weights(group, file_name: str) -> None:
    """A Keras 1/2 weights group: every layer its 'layer_names' lists is there, with every weight its
    'weight_names' lists."""
    for raw in group.attrs.get("layer_names", []):
        layer = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if layer not in group:
            raise InputError("weights-group-missing", f"{file_name} lists the weights of layer '{layer}' but holds "
                             "no group of that name", "the file is damaged; write it again with model.save_weights(...)")
        for raw_weight in group[layer].attrs.get("weight_names", []):
            weight = raw_weight.decode("utf-8", "replace") if isinstance(raw_weight, bytes) else str(raw_weight)
            if weight not in group[layer]:
                raise InputError("weights-group-missing", f"{file_name}: layer '{layer}' lists the weight '{weight}' "
                                 "but holds no such array",
                                 "the file is damaged; write it again with model.save_weights(...)")


def sample_warnings(sample, integer_input: bool, name: str = "the sample") -> list[str]:
    """What about the sample kdiff says up front, and runs anyway: NaN or Inf in it (frameworks treat
    them differently: Theano's ReLU passes NaN, TensorFlow's gives 0), or integers or booleans fed to a
    model that takes floats."""
    import numpy as np

    warnings = []
    arrays = sample if isinstance(sample, list) else [sample]
    for index, array in enumerate(arrays):
        label = name if len(arrays) == 1 else f"{name}'s input {index}"
        if array.dtype.kind == "f":
            nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            if nan or inf:
                warnings.append(f"{label} holds {nan} NaN and {inf} Inf value(s) of {array.size}: frameworks "
                                "propagate them differently, so layers may differ where they reach")
        elif not integer_input:
            warnings.append(f"{label} holds {array.dtype} values but the model takes floats: each framework "
                            "converts them to its own float type")
    return warnings


def _listed(paths: list[str]) -> str:
    shown = ", ".join(paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _positive_int(value: Any) -> bool:
    return type(value) is int and value > 0


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _refuse(label: str, field: str, value: Any, wanted: str) -> None:
    raise InputError("layer-config", f"{label}: '{field}' is {_shown(value)}, but Keras needs {wanted}",
                     "correct the value in the model file (or write it again with model.to_json())")
