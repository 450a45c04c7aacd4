"""Values as plain JSON data: the wire refuses NaN and infinities (``allow_nan=False``), and so
does a report that other tools parse, so a non-finite number is written as "nan", "inf" or
"-inf". Used by the workers for layer configs, by the in-job probe, and by the reports."""
from __future__ import annotations

import math

import numpy as np


def json_number(value: float) -> float | str:
    """A finite float as it is; NaN and the infinities as "nan", "inf", "-inf"."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def json_safe(value):
    """Dicts, lists, strings, numbers, booleans and None as they are (tuples as lists, numpy
    scalars and arrays as Python numbers and lists, non-finite floats as json_number writes
    them); anything else as its repr."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return json_number(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    return repr(value)
