"""Write arrays into an .npz file one at a time, as they arrive (numpy.savez needs them all at once)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


class NpzWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.archive = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def add(self, key: str, array: np.ndarray) -> None:
        with self.archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            npy_format.write_array(member, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        self.archive.close()
