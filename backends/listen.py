"""A worker that listens: it binds an endpoint and serves the coordinators that connect to it, one
session at a time, instead of connecting to the one coordinator that started it (backends.serve).

Run as ``python -m backends.listen --backend NAME --endpoint ENDPOINT [--keys DIR]``:
- by ``kdiff worker --listen tcp://HOST:PORT --keys DIR`` on another host (the GPU machine, or
  the one with the old Theano stack); any endpoint but loopback needs CURVE keys (``kdiff keys``),
  and a client whose key is not authorized never gets a message through;
- by kdiff itself for a warm worker (``kdiff --warm``; kdiff.warm): on a Unix socket in a folder
  only its user can open, with an idle timeout.

A session: the coordinator's DEALER sends ``{"cmd": "hello", "seq": 0}`` and gets the worker's hello
with a session token; its calls are then answered as backends.serve answers them (the same
commands, the same progress messages while a call runs), and the coordinator's keeper socket
pings with the token every second. The session ends with ``shutdown`` (the worker goes on
listening), or when nothing came from the session for ``--lease`` seconds while no call ran (the
coordinator is gone). Another peer meanwhile is told the worker is busy, unless its hello says
``"take_over": true`` (a warm worker's run: it holds the slot's lock, so the session's run is gone). The model a session
loaded stays loaded: a later session loading the same files (by content) gets it back as loaded,
without building or compiling it again (the Worker's ``reuse_key``).

Whatever bytes arrive, the worker answers an error (or nothing, to an unknown ping) and goes on."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import zmq

from backends import registry
from backends.serve import Server, die_with_parent, error_payload
from kdiff.protocol.keys import ServerKeys, is_loopback
from kdiff.protocol.wire import PROTOCOL_VERSION, ProtocolError, decode, encode

EXIT_BAD_SETUP = 2
MAX_MESSAGE_BYTES = 4 << 30   # a call's files travel in one message: a large model's weights fit


class SessionServer(Server):
    """Serves one session at a time on a bound ROUTER socket; every message goes to the session's peer."""

    def __init__(self, socket: zmq.Socket, worker, hello: dict, lease: float, idle_timeout: float):
        super().__init__(socket, worker)
        self.hello = hello
        self.lease = lease
        self.idle_timeout = idle_timeout
        self.peer: bytes | None = None
        self.token: str | None = None
        self.heard = self.idle_since = time.monotonic()
        self.files_root = Path(tempfile.mkdtemp(prefix="kdiff-listen-"))
        self.sessions = 0

    def send(self, header: dict, arrays: dict | None = None) -> None:
        if self.peer is not None:
            self.outbox.put([self.peer, *encode(header, arrays)])

    def send_to(self, peer: bytes, header: dict) -> None:
        """An answer to a peer outside the session, sent now and never waited on (the sender is idle: the serve
        loop reads only once the outbox is empty); one that does not read it loses it."""
        try:
            self.socket.send_multipart([peer, *encode(header)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def serve(self) -> None:
        while True:
            self.outbox.join()
            if not self.socket.poll(250):
                now = time.monotonic()
                if self.peer is not None and now - self.heard > self.lease:
                    sys.stderr.write(f"kdiff worker: session {self.sessions} heard nothing for {self.lease:g} s; "
                                     "ended\n")
                    self.end_session()
                if self.peer is None and self.idle_timeout and now - self.idle_since > self.idle_timeout:
                    return
                continue
            peer, *frames = self.socket.recv_multipart(copy=False)
            if self.handle(peer.bytes, frames) == "exit":
                return

    def handle(self, peer: bytes, frames: list) -> str | None:
        try:
            header, arrays = decode(frames)
        except ProtocolError as exc:
            self.send_to(peer, _error(None, "protocol", "malformed-call", str(exc)))
            return None
        if header.get("type") == "ping":  # the coordinator's keeper: its session goes on
            if self.token is not None and header.get("session") == self.token:
                self.heard = time.monotonic()
            return None
        seq, cmd = header.get("seq"), header.get("cmd")
        if type(seq) is not int or not isinstance(cmd, str):
            self.send_to(peer, _error(None, "protocol", "malformed-call", "a call needs an integer 'seq' and a string "
                                                                          "'cmd'"))
            return None
        if self.peer is None:
            if cmd != "hello":
                self.send_to(peer, _error(seq, "protocol", "no-session", f"'{cmd}' came before a 'hello'"))
                return None
            self.begin_session(peer)
            return None
        if peer != self.peer and cmd == "hello" and (header.get("args") or {}).get("take_over") is True:
            # a warm worker's new run holds the slot's lock, so the session's run is gone (killed, say)
            sys.stderr.write(f"kdiff worker: session {self.sessions} taken over by a new run\n")
            self.end_session()
            self.begin_session(peer)
            return None
        if peer != self.peer:
            self.send_to(peer, _error(seq, "input", "worker-busy", "this worker is in another coordinator's session",
                                      "wait for that run to end, or start another worker"))
            return None
        self.heard = time.monotonic()
        if cmd == "hello":
            self.send(_error(seq, "protocol", "in-session", "'hello' came twice in one session"))
        elif cmd == "shutdown":  # the coordinator is done: the session ends, the worker goes on listening
            self.send({"type": "reply", "seq": seq, "result": {}})
            self.outbox.join()
            self.end_session()
        else:
            self.run_call(seq, cmd, header.get("args") or {}, arrays)
            self.heard = time.monotonic()
        return None

    def begin_session(self, peer: bytes) -> None:
        self.peer, self.token = peer, secrets.token_hex(16)
        self.sessions += 1
        self.heard = time.monotonic()
        folder = self.files_root / f"session-{self.sessions}"
        folder.mkdir()
        self.worker.files_dir = str(folder)
        self.send({**self.hello, "type": "hello", "seq": 0, "session": self.token})

    def end_session(self) -> None:
        self.worker.end_session()
        if self.worker.files_dir:
            shutil.rmtree(self.worker.files_dir, ignore_errors=True)
        self.worker.files_dir = None
        self.peer = self.token = None
        self.idle_since = time.monotonic()

    def close(self) -> None:
        shutil.rmtree(self.files_root, ignore_errors=True)


def _error(seq, kind: str, code: str, message: str, hint: str = "") -> dict:
    return {"type": "error", "seq": seq, "error": {"kind": kind, "code": code, "message": message, "hint": hint}}


def bind(context: zmq.Context, endpoint: str, keys_dir: str | None):
    """The worker's ROUTER socket bound at ``endpoint`` (CURVE with the keys in ``keys_dir``), and the
    authenticator thread when there are keys."""
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 1000)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    socket.setsockopt(zmq.SNDHWM, 1)  # a coordinator that does not read holds up the sender, not our memory:
    socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # its sends wait (a plain ROUTER would drop them); a peer gone fails
    socket.setsockopt(zmq.HEARTBEAT_IVL, 1000)  # a peer that vanished is dropped within seconds
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 10000)
    authenticator = None
    if keys_dir:
        keys = ServerKeys.load(keys_dir)
        authenticator = keys.start_authenticator(context)
        keys.configure_server(socket)
    socket.bind(endpoint)
    return socket, authenticator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.listen")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--endpoint", required=True, help="where to listen, e.g. tcp://0.0.0.0:5570 or ipc:///path")
    parser.add_argument("--keys", help="a 'kdiff keys' folder: probe.key_secret and authorized_clients/")
    parser.add_argument("--lease", type=float, default=20.0, help="end a session not heard from for this long")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this long without a session "
                                                                         "(0: never)")
    parser.add_argument("--info-file", help="write the worker's pid and endpoint here once it listens; removed at exit")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the kdiff that started us) dies")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE passed to the worker")
    parser.add_argument("--worker-module", help="import the Worker class from here instead of backends.NAME.worker")
    args = parser.parse_args(argv)

    if args.keys is None and not is_loopback(args.endpoint):
        sys.stderr.write(f"kdiff worker: {args.endpoint} is not a loopback address, and without keys anyone who "
                         "reaches it could drive this worker; make keys with 'kdiff keys DIR' and pass --keys DIR\n")
        return EXIT_BAD_SETUP
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # 'kdiff serve --stop': the files below are removed
    try:
        worker_class = (importlib.import_module(args.worker_module).Worker if args.worker_module
                        else registry.backend(args.backend).worker_class())
        worker = worker_class(dict(item.split("=", 1) for item in args.option))
        info = worker.start()
    except Exception as exc:  # noqa: BLE001 -- said once, to the one who started us
        sys.stderr.write(f"kdiff worker: the {args.backend} worker cannot start: {error_payload(exc)['message']}\n")
        return 1
    worker.reuse_models = True
    context = zmq.Context()
    try:
        socket, authenticator = bind(context, args.endpoint, args.keys)
    except (OSError, ValueError, zmq.ZMQError) as exc:
        sys.stderr.write(f"kdiff worker: cannot listen on {args.endpoint}: {exc}\n")
        context.destroy(linger=0)
        return EXIT_BAD_SETUP
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    hello = {"protocol": PROTOCOL_VERSION, "backend": args.backend, "pid": os.getpid(),
             "python": sys.version.split()[0], "listening": endpoint, **info}
    server = SessionServer(socket, worker, hello, args.lease, args.idle_timeout)
    if args.info_file:
        Path(args.info_file).write_text(json.dumps({"pid": os.getpid(), "endpoint": endpoint,
                                                    "backend": args.backend}))
    sys.stderr.write(f"kdiff worker: {args.backend} listening on {endpoint}"
                     f"{' (CURVE keys required)' if args.keys else ''}\n")
    sys.stderr.flush()
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        if args.info_file:
            Path(args.info_file).unlink(missing_ok=True)
        server.close()
        socket.close(linger=0)
        if authenticator is not None:
            authenticator.stop()
        context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
