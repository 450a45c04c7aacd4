"""A float64 copy of a Keras 3 ``.keras`` file, for a high-precision reference
(``--against BACKEND:float64``): every float32 dtype in its config becomes float64; the
stored float32 weights are cast exactly when the reference loads them."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path


def write_float64_copy(model: Path) -> Path:
    target = model.with_name(model.stem + "-float64.keras")
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(target, "w") as copy:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(_to_float64(json.loads(data))).encode("utf-8")
            copy.writestr(item, data)
    return target


def _to_float64(node):
    if isinstance(node, list):
        return [_to_float64(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {key: _to_float64(value) for key, value in node.items()}
    if copy.get("dtype") == "float32":
        copy["dtype"] = "float64"
    policy = copy.get("config")
    if copy.get("class_name") == "DTypePolicy" and isinstance(policy, dict) and policy.get("name") == "float32":
        policy["name"] = "float64"
    return copy
