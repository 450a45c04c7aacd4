import json
from pathlib import Path

import numpy as np
import pytest

from kdiff.environments import ensure_env

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def env_python():
    """The interpreter of a kdiff environment, built on first use (as a user's first run does)."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = str(ensure_env(name, print))
        return built[name]

    return get


def fixture_dir(name: str) -> Path:
    return FIXTURES / name


def fixture_meta(name: str) -> dict:
    return json.loads((FIXTURES / name / "meta.json").read_text())


def max_relative_error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.maximum(np.abs(a), np.abs(b))
    nonzero = scale > 1e-6
    return float((np.abs(a - b)[nonzero] / scale[nonzero]).max()) if nonzero.any() else float(np.abs(a - b).max())
