"""A worker that says hello properly and then answers every call with a chosen kind of garbage.

Run as ``python -m tests.rogue_worker`` with backends.serve's arguments plus
``--option garbage=KIND``, KIND one of: not-json, object-dtype, size-mismatch, unknown-type;
or old-protocol, which says hello in the protocol version before kdiff's.
"""
from __future__ import annotations

import argparse
import json
import os

import zmq

from kdiff.wire import PROTOCOL_VERSION, encode


def garbage(kind: str, seq: int) -> list:
    if kind == "not-json":
        return [b"\xff\x00 this is not json"]
    if kind == "object-dtype":
        header = {"type": "reply", "seq": seq, "result": {},
                  "arrays": [{"key": "0", "dtype": "|O", "shape": [1], "nbytes": 8}]}
        return [json.dumps(header).encode(), b"\x00" * 8]
    if kind == "size-mismatch":
        header = {"type": "reply", "seq": seq, "result": {},
                  "arrays": [{"key": "0", "dtype": "<f4", "shape": [1000], "nbytes": 4000}]}
        return [json.dumps(header).encode(), b"\x00" * 12]
    return encode({"type": "surprise", "seq": seq})


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--backend", "--side", "--endpoint", "--heartbeat", "--parent-pid", "--heartbeat-interval",
                 "--coordinator-timeout", "--worker-module", "--cpus"):
        parser.add_argument(flag)
    parser.add_argument("--option", action="append", default=[])
    args = parser.parse_args()
    kind = dict(item.split("=", 1) for item in args.option)["garbage"]
    socket = zmq.Context().socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.side.encode())
    socket.connect(args.endpoint)
    protocol = PROTOCOL_VERSION - 1 if kind == "old-protocol" else PROTOCOL_VERSION
    socket.send_multipart(encode({"type": "hello", "protocol": protocol, "backend": args.backend,
                                  "pid": os.getpid(), "versions": {}, "device": "cpu"}))
    while True:
        frames = socket.recv_multipart()
        seq = json.loads(frames[0])["seq"]
        socket.send_multipart(garbage(kind, seq))


if __name__ == "__main__":
    main()
