"""A framework's layer config as plain JSON data (for the diagnosis, which reads it as JSON)."""
from __future__ import annotations

import numpy as np


def json_safe(value):
    """Dicts, lists, strings, numbers, booleans and None as they are (tuples as lists, numpy
    scalars and arrays as Python numbers and lists); anything else as its repr."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return repr(value)
