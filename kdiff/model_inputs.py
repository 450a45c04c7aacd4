"""The user's sample, made once into what each side is fed: one array per model input, as side
A takes it and as side B takes it (moved to B's memory layout by kdiff.layouts when the two
models are built in different layouts)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdiff.protocol import vocabulary


@dataclass(frozen=True)
class ModelInputs:
    a: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    listed: bool = False  # the sample came as a list (one array per model input), and is reported so

    @classmethod
    def of(cls, sample: "np.ndarray | list | tuple | ModelInputs", bridge=None) -> "ModelInputs":
        """From the sample (one array, or a list of one per model input) and the session's layout
        bridge (kdiff.layouts), which moves a single array to side B's layout; a list is fed as it is
        to both sides."""
        if isinstance(sample, ModelInputs):
            return sample
        if isinstance(sample, (list, tuple)):
            return cls(tuple(sample), tuple(sample), True)
        return cls((sample,), (sample,) if bridge is None else (bridge.sample_for_b(sample),))

    def side(self, side: str) -> tuple[np.ndarray, ...]:
        return self.a if side == "a" else self.b

    def pack(self, side: str, prefix: str = vocabulary.VALUES) -> dict[str, np.ndarray]:
        """The arrays of a call feeding these inputs to ``side``."""
        return vocabulary.pack(self.side(side), prefix)

    @property
    def batch(self) -> int:
        return int(self.a[0].shape[0])

    def info(self, path: str) -> dict:
        """The report's account of the input: its shape and dtype, or one of each per input of a model with several."""
        if self.listed:
            return {"path": path, "shape": [list(x.shape) for x in self.a], "dtype": [x.dtype.str for x in self.a]}
        return {"path": path, "shape": list(self.a[0].shape), "dtype": self.a[0].dtype.str}
