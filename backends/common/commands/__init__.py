"""The commands a worker answers, one registry for all of them.

A command is a function ``handler(call: Call) -> None`` registered with ``@command("name")``;
it answers with ``call.reply(result, arrays)`` (once), after any number of ``call.part(...)``
messages for commands that stream. Each feature keeps its commands in its own module here;
``backends.serve`` imports them all."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kdiff.protocol import vocabulary

COMMANDS: dict[str, Callable[["Call"], None]] = {}


def command(name: str):
    def register(handler):
        if name in COMMANDS:
            raise RuntimeError(f"command {name!r} registered twice")
        COMMANDS[name] = handler
        return handler
    return register


@dataclass
class Call:
    seq: int
    args: dict
    arrays: dict
    worker: object
    send: Callable[[dict, dict | None], None]

    def reply(self, result: dict | None = None, arrays: dict | None = None) -> None:
        self.send({"type": "reply", "seq": self.seq, "result": result or {}}, arrays)

    def part(self, header: dict, arrays: dict | None = None) -> None:
        self.send({"type": "part", "seq": self.seq, **header}, arrays)

    def numbered(self, prefix: str = vocabulary.VALUES) -> list[np.ndarray]:
        """The list of arrays sent under ``prefix`` (kdiff.protocol.vocabulary), in order, as writable copies."""
        return [np.array(value) for value in vocabulary.unpack(self.arrays, prefix)]
