"""The coordinator's side of a link to a listening worker (backends.listen): what its connection's
socket events say (refused keys, nothing listening, a worker busy with another run), and the
keeper thread whose pings keep its session alive."""
from __future__ import annotations

import threading
import time
from collections import deque

import zmq

from kdiff.errors import InputError
from kdiff.protocol.wire import encode


class ConnectionWatch:
    """How the coordinator's connection to a listening worker goes, from ZeroMQ's socket events: keys the
    worker refused, nothing listening at the endpoint, or a worker that took the connection but never
    answered the hello (it serves another run's call), are said within seconds, not at the deadline."""

    CONNECT_WITHIN = 15.0   # seconds for a connection to a worker on another host
    HELLO_WITHIN = 30.0     # seconds, once connected, for its hello

    def __init__(self, socket: zmq.Socket, endpoint: str, with_keys: bool, local: bool):
        self.monitor = socket.get_monitor_socket(zmq.EVENT_ALL)
        self.endpoint, self.with_keys, self.local = endpoint, with_keys, local
        self.since = time.monotonic()
        self.connected_at: float | None = None  # when a handshake succeeded
        self.reached = False                     # a connection was made at all

    def check(self, worker, waiting_for_hello: bool) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor)["event"]
            except (zmq.ZMQError, ValueError, KeyError):
                break
            if event == zmq.EVENT_CONNECTED:
                self.reached = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED and self.connected_at is None:
                self.connected_at = time.monotonic()
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise InputError("worker-refused-keys", f"the {worker.backend} worker at {self.endpoint} refused "
                                 "this kdiff's keys", "pass --keys the folder made with the worker's keys (its "
                                 "client.key_secret and probe.key), or add this client's key to its authorized_clients/")
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                if self.with_keys:
                    raise InputError("worker-refused-keys", f"the handshake with the {worker.backend} worker at "
                                     f"{self.endpoint} failed: its keys and this kdiff's do not match (or it runs "
                                     "without keys)", "pass --keys the folder made with the worker's keys (its "
                                     "client.key_secret and probe.key)")
                raise InputError("worker-handshake-failed", f"the handshake with the {worker.backend} worker at "
                                 f"{self.endpoint} failed", "the worker wants CURVE keys: pass --keys DIR, the folder "
                                 "'kdiff keys DIR' made for it")
        if self.local or not waiting_for_hello:
            return
        now = time.monotonic()
        if self.connected_at is None and self.reached and now - self.since > self.CONNECT_WITHIN:
            raise InputError("worker-refused-keys", f"the {worker.backend} worker at {self.endpoint} takes connections "
                             f"but no handshake with it succeeded in {self.CONNECT_WITHIN:g} s: its keys and this "
                             "kdiff's do not match", "pass --keys the folder made with the worker's keys (its "
                             "client.key_secret and probe.key); without keys on either side, pass them on both")
        if self.connected_at is None and now - self.since > self.CONNECT_WITHIN:
            raise InputError("worker-unreachable", f"nothing answers at {self.endpoint} (no {worker.backend} worker "
                             f"listening there after {self.CONNECT_WITHIN:g} s)",
                             "start it on that host with 'kdiff worker --listen ENDPOINT --backend "
                             f"{worker.backend} --keys DIR', and check the host and port")
        if self.connected_at is not None and now - self.connected_at > self.HELLO_WITHIN:
            raise InputError("worker-busy", f"the {worker.backend} worker at {self.endpoint} took the connection but "
                             f"has not answered for {self.HELLO_WITHIN:g} s: it is serving another run",
                             "wait for that run to end, or start another worker on another port")

    def close(self) -> None:
        self.monitor.close(linger=0)


class SessionKeeper(threading.Thread):
    """Pings every listening worker's session once a second from a socket of its own: a listening
    worker ends a session it has not heard from (backends.listen), so that a coordinator that died
    leaves no session behind."""

    def __init__(self, context: zmq.Context, interval: float = 1.0):
        super().__init__(name="kdiff-session-keeper", daemon=True)
        self.context, self.interval = context, interval
        self.wanted: deque = deque()  # (endpoint, keys, token) to ping, handed to the thread
        self.stopped = threading.Event()

    def keep(self, endpoint: str, keys, token: str) -> None:
        self.wanted.append((endpoint, keys, token))
        if not self.is_alive():
            self.start()

    def run(self) -> None:
        sockets = []
        while not self.stopped.is_set():
            while self.wanted:
                endpoint, keys, token = self.wanted.popleft()
                socket = self.context.socket(zmq.DEALER)
                socket.setsockopt(zmq.LINGER, 0)
                socket.setsockopt(zmq.SNDHWM, 4)
                if keys is not None:
                    keys.configure_client(socket)
                socket.connect(endpoint)
                sockets.append((socket, encode({"type": "ping", "session": token})))
            for socket, ping in sockets:
                try:
                    socket.send_multipart(ping, flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass  # not connected yet, or its queue is full: the next ping will do
            self.stopped.wait(self.interval)
        for socket, _ in sockets:
            socket.close()
