"""What the rules about framework bugs share: whether side B runs a release a bug is known in."""
from __future__ import annotations


def keras_release(versions: dict) -> tuple | None:
    """Side B's Keras release as a tuple of ints (None when its worker reported none we can read)."""
    try:
        return tuple(int(part) for part in str(versions.get("keras", "")).split(".")[:3])
    except ValueError:
        return None


def applies_to(backend: str, versions: dict, framework: str, releases: tuple) -> bool:
    """Whether side B runs ``framework`` under a Keras release within ``releases`` (low, high), both included."""
    release = keras_release(versions)
    if backend != framework or release is None:
        return False
    low, high = releases
    return low <= release <= high
