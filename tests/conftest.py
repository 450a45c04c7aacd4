import json
from pathlib import Path

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
