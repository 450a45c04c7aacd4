"""A worker that says hello properly, keeps its heartbeat, and then answers every call with a chosen
kind of garbage.

Run as ``python -m tests.rogue_worker`` with backends.serve's arguments plus
``--option garbage=KIND``, KIND one of GARBAGE's keys; or old-protocol, which says hello in the
protocol version before kdiff's.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import zmq

from backends.serve import HeartbeatThread
from kdiff.protocol.wire import PROTOCOL_VERSION, encode


def _array_reply(seq: int, entry: dict, buffer: bytes) -> list:
    header = {"type": "reply", "seq": seq, "result": {}, "arrays": [{"key": "0", **entry}]}
    return [json.dumps(header).encode(), buffer]


GARBAGE = {
    "not-json": lambda seq: [b"\xff\x00 this is not json"],
    "object-dtype": lambda seq: _array_reply(seq, {"dtype": "|O", "shape": [1], "nbytes": 8}, b"\x00" * 8),
    "subarray-dtype": lambda seq: _array_reply(seq, {"dtype": "(-1,)f4", "shape": [1], "nbytes": 4}, b"\x00" * 4),
    "size-mismatch": lambda seq: _array_reply(seq, {"dtype": "<f4", "shape": [1000], "nbytes": 4000}, b"\x00" * 12),
    "too-many-dims": lambda seq: _array_reply(seq, {"dtype": "<f4", "shape": [1] * 65, "nbytes": 4}, b"\x00" * 4),
    "huge-shape": lambda seq: _array_reply(seq, {"dtype": "<f4", "shape": [0, 2 ** 63], "nbytes": 0}, b""),
    "deep-json": lambda seq: [(b'{"type": "reply", "seq": %d, "result": {"x": ' % seq) + b"[" * 3000 + b"]" * 3000
                              + b"}}"],
    "huge-header": lambda seq: [json.dumps({"type": "reply", "seq": seq, "result": {"x": "y" * (17 << 20)}}).encode()],
    "huge-frame": lambda seq: _array_reply(seq, {"dtype": "<f4", "shape": [4], "nbytes": 16}, b"\x00" * (64 << 20)),
    "error-string": lambda seq: encode({"type": "error", "seq": seq, "error": "boom"}),
    "result-list": lambda seq: encode({"type": "reply", "seq": seq, "result": [1, 2]}),
    "seq-string": lambda seq: encode({"type": "reply", "seq": str(seq), "result": {}}),
    "wrong-seq": lambda seq: encode({"type": "reply", "seq": seq + 1000, "result": {}}),
    "answered-twice": lambda seq: None,  # (see main)
    "silence": lambda seq: None,
    "die-mid-call": lambda seq: None,
    "unknown-type": lambda seq: encode({"type": "surprise", "seq": seq}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--backend", "--side", "--endpoint", "--heartbeat", "--parent-pid", "--heartbeat-interval",
                 "--coordinator-timeout", "--worker-module", "--cpus"):
        parser.add_argument(flag)
    parser.add_argument("--option", action="append", default=[])
    args = parser.parse_args()
    kind = dict(item.split("=", 1) for item in args.option)["garbage"]
    context = zmq.Context()
    HeartbeatThread(context, args.heartbeat, args.side.encode(), float(args.heartbeat_interval or 1.0),
                    float(args.coordinator_timeout or 15.0)).start()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.side.encode())
    socket.connect(args.endpoint)
    protocol = PROTOCOL_VERSION - 1 if kind == "old-protocol" else PROTOCOL_VERSION
    socket.send_multipart(encode({"type": "hello", "protocol": protocol, "backend": args.backend,
                                  "pid": os.getpid(), "versions": {}, "device": "cpu"}))
    answered = []
    while True:
        frames = socket.recv_multipart()
        seq = json.loads(frames[0])["seq"]
        if kind == "silence":
            continue  # the heartbeat goes on; the call is never answered
        if kind == "die-mid-call":
            socket.send_multipart(encode({"type": "part", "seq": seq, "layer": "dense_1"}))
            time.sleep(0.2)
            os._exit(7)
        if kind == "answered-twice":
            answered.append(seq)
            for earlier in answered:  # every earlier call's reply, again
                socket.send_multipart(encode({"type": "reply", "seq": earlier, "result": {}}))
            continue
        socket.send_multipart(GARBAGE.get(kind, GARBAGE["unknown-type"])(seq))


if __name__ == "__main__":
    main()
