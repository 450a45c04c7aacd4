"""A coordinator's connection to one probe: requests out, answers, metrics and snapshots in.

Every wait has a deadline; a probe that never answers (wrong endpoint, or CURVE keys it
refuses, in which case ZeroMQ never completes the handshake) ends in a KdiffError."""
from __future__ import annotations

import time
from typing import Callable

import zmq

from kdiff.errors import KdiffError
from kdiff.protocol.wire import PROTOCOL_VERSION, ProtocolError, decode, encode

MAX_SNAPSHOT_BYTES = 8 * 1024**3


class ProbeUnreachable(KdiffError):
    exit_code = 3


class ProbeClient:
    def __init__(self, endpoint: str, keys=None, label: str = ""):
        self.endpoint = endpoint
        self.label = label or endpoint
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_SNAPSHOT_BYTES)
        if keys is not None:
            keys.configure_client(self.socket)
        self.socket.connect(endpoint)
        self.on_metrics: Callable[[str, dict], None] = lambda label, metrics: None

    def request(self, name: str, **args) -> None:
        self.socket.send_multipart(encode({"type": "request", "request": name, **args}), flags=zmq.NOBLOCK)

    def hello(self, timeout: float) -> dict:
        self.request("hello")
        header, _ = self.receive({"hello"}, time.monotonic() + timeout,
                                 "is the job running with a probe there, and are your keys its keys?")
        if header.get("protocol") != PROTOCOL_VERSION:
            raise ProbeUnreachable("probe-protocol", f"the probe at {self.label} speaks protocol "
                                   f"{header.get('protocol')!r}, this kdiff {PROTOCOL_VERSION}",
                                   "use the same kdiff version in the job and here")
        return header

    def receive(self, kinds: set[str], deadline: float, hint: str = "") -> tuple[dict, dict]:
        """The next message of one of ``kinds`` before ``deadline``; metrics on the way go to ``on_metrics``."""
        while True:
            found = self.next_message(kinds, min(0.2, max(0.0, deadline - time.monotonic())))
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise ProbeUnreachable("probe-no-answer", f"no answer from the probe at {self.label} in time",
                                       hint or "raise --timeout if the job's steps are slow")

    def next_message(self, kinds: set[str], wait: float) -> tuple[dict, dict] | None:
        """A message of one of ``kinds`` if one comes within ``wait`` seconds, else None."""
        deadline = time.monotonic() + wait
        while self.socket.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            try:
                header, arrays = decode(self.socket.recv_multipart(copy=False))
            except ProtocolError as exc:
                raise ProbeUnreachable("probe-malformed", f"the probe at {self.label} sent a malformed message: "
                                       f"{exc}") from exc
            kind = header.get("type")
            if kind == "metrics":
                self.on_metrics(self.label, header)
            elif kind == "error":
                raise ProbeUnreachable("probe-error", f"the probe at {self.label}: {header.get('message')}")
            elif kind in kinds:
                return header, arrays
        return None

    def close(self) -> None:
        """Detach (if the probe is still there) and drop the connection at once."""
        try:
            self.request("detach")
        except zmq.ZMQError:
            pass
        self.socket.close(linger=200)
        self.context.term()
