"""The probe's side of the connection: a ZeroMQ ROUTER socket bound inside the training job.

The probe answers a fixed set of requests and never runs anything a coordinator sends.
Nothing here may slow the job down or stop it: every receive is a zero-timeout poll, every
send is non-blocking (a message to a peer that is gone, slow or over its high-water mark is
dropped, never waited for), and closing discards unsent messages.

Requests (``{"type": "request", "request": NAME, ...}``):
  hello      -> ``{"type": "hello", "protocol", "step", "backend", "model", "model_hash", "pid"}``
  attach     -> ``{"type": "attached", "step"}``, then ``{"type": "metrics", "step", "loss", "grad_norm"}``
                every step until ``detach``
  snapshot   -> ``{"type": "snapshot-pending", "at_step"}`` now (``at_step``: optional, default the
                next step), then ``{"type": "snapshot", ...}`` with the arrays at that step boundary;
                ``model_hash`` (optional): the model file the coordinator holds already, which is then
                not sent again (backends.modern_keras.capture.Capture.model_hash)
  detach     -> ``{"type": "detached"}``; pending snapshots for that peer are dropped
Anything else gets ``{"type": "error", "message"}``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import zmq

from kdiff.protocol.keys import is_loopback  # noqa: F401  (re-exported)
from kdiff.protocol.wire import PROTOCOL_VERSION, ProtocolError, decode, encode

HASH = re.compile(r"[0-9a-f]{1,64}")
REQUESTS = ("hello", "attach", "detach", "snapshot")
SEND_HWM = 64             # queued messages per peer before further ones are dropped
MAX_REQUESTS_PER_STEP = 16  # a flood of requests costs the job at most this many decodes per step
MAX_REQUEST_BYTES = 64 * 1024  # requests are small; a larger one drops the peer (ZeroMQ's MAXMSGSIZE)


class ProbeSetupError(Exception):
    """The probe cannot bind as asked (e.g. a non-loopback address without keys)."""


@dataclass
class Request:
    peer: bytes
    name: str
    at_step: int | None = None
    model_hash: str | None = None


@dataclass
class Peers:
    attached: set = field(default_factory=set)     # peers receiving per-step metrics
    snapshots: dict = field(default_factory=dict)  # peer -> step at which to capture
    held_models: dict = field(default_factory=dict)  # peer -> the hash of the model file it holds


class ProbeChannel:
    """The bound socket and the requests it accepts. ``keys``: a kdiff.protocol.keys.ServerKeys for
    CURVE (required for any non-loopback endpoint)."""

    def __init__(self, endpoint: str, keys=None):
        if keys is None and not is_loopback(endpoint):
            raise ProbeSetupError(
                f"the probe would listen on {endpoint}, which is not a loopback address, without authentication; "
                "make keys with 'kdiff keys DIR' and pass keys=kdiff.probe.ServerKeys.load(DIR)")
        self.context = zmq.Context()
        self.authenticator = None
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.socket.setsockopt(zmq.SNDTIMEO, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)     # a send to a peer that is gone fails at once
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, 1000)     # and a silent peer is dropped within seconds
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        if keys is not None:
            self.authenticator = keys.start_authenticator(self.context)
            keys.configure_server(self.socket)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ProbeSetupError(f"the probe cannot listen on {endpoint}: {exc}") from exc
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.peers = Peers()

    def requests(self) -> list[Request]:
        """The requests waiting now (none: one zero-timeout poll); malformed ones are answered with an error."""
        found = []
        for _ in range(MAX_REQUESTS_PER_STEP):
            if not self.socket.poll(0, zmq.POLLIN):
                break
            peer, *frames = self.socket.recv_multipart()
            try:
                found.append(parse_request(peer, frames))
            except ProtocolError as exc:
                self.send(peer, {"type": "error", "message": str(exc)})
        return found

    def send(self, peer: bytes, header: dict, arrays: dict | None = None) -> str:
        """Queue one message for a peer without waiting: "sent", "dropped" (the peer's queue is
        full) or "gone" (the peer disconnected)."""
        try:
            self.socket.send_multipart([peer, *encode(header, arrays)], flags=zmq.NOBLOCK, copy=False)
            return "sent"
        except zmq.Again:
            return "dropped"
        except zmq.ZMQError as exc:
            return "gone" if exc.errno == zmq.EHOSTUNREACH else "dropped"

    def hello(self, step: int, backend: str, model_name: str, model_hash: str = "") -> dict:
        return {"type": "hello", "protocol": PROTOCOL_VERSION, "step": step, "backend": backend,
                "model": model_name, "model_hash": model_hash, "pid": os.getpid()}

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()


def parse_request(peer: bytes, frames: list) -> Request:
    header, arrays = decode(frames, max_header_bytes=MAX_REQUEST_BYTES)
    if arrays:
        raise ProtocolError("requests carry no arrays")
    if header.get("type") != "request" or header.get("request") not in REQUESTS:
        raise ProtocolError(f"unknown request {header.get('request')!r}; the probe answers {', '.join(REQUESTS)}")
    at_step = header.get("at_step")
    if at_step is not None and (type(at_step) is not int or at_step < 0):
        raise ProtocolError(f"at_step must be a non-negative integer, got {at_step!r}")
    model_hash = header.get("model_hash")
    if model_hash is not None and (type(model_hash) is not str or not HASH.fullmatch(model_hash)):
        raise ProtocolError("model_hash must be a hexadecimal string of at most 64 digits")
    return Request(peer, header["request"], at_step, model_hash)
