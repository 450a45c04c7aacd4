"""Worker processes and the coordinator's link to them over ZeroMQ.

One ROUTER socket carries calls to every worker (each worker's DEALER identity is its
side, ``a`` or ``b``); a second ROUTER socket, served by a thread, answers heartbeats and
records when each worker was last heard of. Every wait goes through a Poller with a
deadline, and checks that the worker process is alive and still sending heartbeats.
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from kdiff.errors import InputError, WorkerFailure
from kdiff.protocol.wire import PROTOCOL_VERSION, ProtocolError, decode, encode
from kdiff.worker_links import ConnectionWatch, SessionKeeper

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # holds both kdiff/ and backends/


@dataclass(frozen=True)
class Timeouts:
    start: float = 300.0      # from spawn to hello: imports a framework
    call: float = 600.0       # one call (a load may compile)
    heartbeat_interval: float = 1.0
    liveness: float = 20.0    # no heartbeat for this long: the worker is stuck
    silence: float = 10.0     # nothing for a call for this long (a worker sends progress every second): it ignores it


@dataclass
class WorkerProcess:
    side: str
    backend: str
    python: str
    process: subprocess.Popen | None  # None: a listening worker kdiff did not start in this run
    log_path: Path
    hello: dict = field(default_factory=dict)
    last_command: str = "start"
    endpoint: str = ""         # a listening worker's (backends.listen): kdiff connects to it
    pid: int | None = None     # a listening worker on this machine: its process, watched while kdiff waits
    sends_files: bool = False  # on another host: the model's files travel in the calls, and so do those it writes

    @property
    def listening(self) -> bool:
        return bool(self.endpoint)

    def exit_status(self) -> int | None:
        """None while the worker's process runs (or, on another host, as far as kdiff can tell)."""
        if self.process is not None:
            return self.process.poll()
        if self.pid is not None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return 0
            except PermissionError:
                return None
        return None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


_live_processes: set[subprocess.Popen] = set()
_open_pools: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


@atexit.register
def _close_leftovers() -> None:
    """At exit (Ctrl-C included), close every pool still open: workers stopped, sockets closed,
    so that tearing down ZeroMQ cannot block; then kill any worker process still running."""
    for pool in list(_open_pools):
        pool.close()
    for process in list(_live_processes):
        if process.poll() is None:
            process.kill()
            process.wait()


def cpus_for(side: str) -> list[int]:
    """With KDIFF_SPLIT_CPUS=1, the CPUs a diff's worker runs on: side A the first half of those
    kdiff may use, side B the other half, so that two frameworks computing at once do not
    oversubscribe the machine (each sizes its thread pools for every CPU it sees). That pays on
    large models (MobileNetV2 here: 2.55 -> 2.42 s a compare, 3.24 -> 2.62 s with the noise floor)
    but slows the workers' start and compilation (a small model's whole run: 16 -> 19-23 s), so by
    default both share every CPU: [] (no restriction), as for any other worker or a single CPU; their
    thread pools are then sized to half the CPUs each (thread_pools_for_a_side)."""
    if side not in ("a", "b") or os.environ.get("KDIFF_SPLIT_CPUS") != "1" or not hasattr(os, "sched_getaffinity"):
        return []
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return []
    half = len(available) // 2
    return available[:half] if side == "a" else available[half:]


def _bind_local(socket: zmq.Socket, path: Path) -> str:
    """Bind ``socket`` for a worker on this machine: a Unix socket at ``path`` where ZeroMQ and the path
    allow (MobileNetV2's compare moves 0.5 GB: the coordinator spent 0.1 CPU-s less per compare than on
    TCP loopback, each worker 0.03-0.05), else a random TCP port on the loopback. Each bind gets a path
    of its own: a closed socket's file is removed in the background, and could take a new one's."""
    if zmq.has("ipc") and len(str(path)) < 100:  # (sun_path holds 107 bytes)
        endpoint = f"ipc://{path}"
        socket.bind(endpoint)
        return endpoint
    return f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"


def thread_pools_for_a_side() -> dict[str, str]:
    """The thread pool sizes of a diff's worker, as environment variables (a user's own settings win):
    half the CPUs, so that two frameworks computing at once do not each size their pools for all of
    them. On 2 CPUs, MobileNetV2's forward+backward compare took 2.44 -> 2.24 CPU-s (three processes)
    and 1.40 -> 1.30 s. Unlike KDIFF_SPLIT_CPUS, nothing is pinned: start-up and compilation may still
    use every CPU."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, available // 2))
    return {"OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}


def worker_environment() -> dict[str, str]:
    """The environment a worker process starts in: kdiff's source importable, OpenMP waiting passively."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
    # two workers compute at once on the same CPUs: an OpenMP thread pool (PyTorch's) that spins while
    # it waits takes them from the other (MobileNetV2's compare: torch's worker 1.8 -> 0.5 CPU s)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


STREAM_QUEUE = 1  # messages queued per worker socket on each end (ZeroMQ's high-water mark)


class HeartbeatResponder(threading.Thread):
    """Answers every worker ping with a pong and records when each side was last heard."""

    def __init__(self, context: zmq.Context):
        super().__init__(name="kdiff-heartbeats", daemon=True)
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.last_seen: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.socket.poll(200):
                identity, *_ = self.socket.recv_multipart()
                self.last_seen[identity.decode(errors="replace")] = time.monotonic()
                self.socket.send_multipart([identity, *encode({"type": "pong"})])
        self.socket.close()


class WorkerPool:
    """Starts workers, sends them calls, and makes sure none outlives the coordinator."""

    def __init__(self, timeouts: Timeouts = Timeouts()):
        self.timeouts = timeouts
        self.context = zmq.Context()
        self.sockets: dict[str, zmq.Socket] = {}  # one per worker, so that one side can be read and not the other
        self._read_turn = 0
        self.heartbeats = HeartbeatResponder(self.context)
        self.heartbeats.start()
        self.keeper = SessionKeeper(self.context)
        self.keys: dict = {}  # side -> the CURVE client keys of a listening worker reached with them
        self.monitors: dict[str, ConnectionWatch] = {}  # side -> how its connection to a listening worker goes
        self.workers: dict[str, WorkerProcess] = {}
        self.inbox: dict[str, deque] = {}
        self.last_seq = 0  # the sequence number of the last call sent (to any side)
        self.unanswered: dict[str, set[int]] = {}  # per side, the calls sent whose reply has not come
        self.last_heard: dict[str, float] = {}     # per side, when its last message was read
        self._binds = itertools.count(1)  # names each worker socket's file (kdiff.workers._bind_local)
        self.logdir = Path(tempfile.mkdtemp(prefix="kdiff-workers-"))
        self.keep_logs = False  # a failure's hint names a log: it then outlives the pool
        self.closed = False
        _open_pools.add(self)

    # ---- lifecycle ----------------------------------------------------------------------
    def spawn(self, side: str, backend: str, python: str, options: dict[str, str] | None = None,
              worker_module: str | None = None, entry: str = "backends.serve") -> WorkerProcess:
        if not Path(python).exists():
            raise InputError("python-not-found", f"Python interpreter for side {side} not found: {python}",
                             f"pass an existing interpreter with --{side}-python, or omit it")
        env = worker_environment()
        endpoint = self._bind(side)
        command = [python, "-m", entry, "--backend", backend, "--side", side,
                   "--endpoint", endpoint, "--heartbeat", self.heartbeats.endpoint,
                   "--parent-pid", str(os.getpid()),
                   "--heartbeat-interval", str(self.timeouts.heartbeat_interval),
                   "--coordinator-timeout", str(max(15.0, self.timeouts.liveness))]
        cpus = cpus_for(side)
        if cpus:
            command += ["--cpus", ",".join(map(str, cpus))]
        elif side in ("a", "b"):
            for name, value in thread_pools_for_a_side().items():
                env.setdefault(name, value)
        for key, value in (options or {}).items():
            command += ["--option", f"{key}={value}"]
        if worker_module:
            command += ["--worker-module", worker_module]
        log_path = self.logdir / f"worker-{side}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
        _live_processes.add(process)
        worker = WorkerProcess(side, backend, python, process, log_path)
        self.workers[side] = worker
        return worker

    def connect(self, side: str, backend: str, endpoint: str, keys=None, process: subprocess.Popen | None = None,
                pid: int | None = None, log_path: Path | None = None, take_over: bool = False) -> WorkerProcess:
        """Reach a listening worker (backends.listen) at ``endpoint`` and ask it for a session; ``keys``: a
        kdiff.protocol.keys.ClientKeys (CURVE), which any endpoint but loopback needs. ``wait_hello`` then
        waits for its answer. ``process``/``pid``: a worker on this machine, watched while kdiff waits;
        ``take_over``: end a session it still holds (a warm worker whose slot this run has locked)."""
        if side in self.sockets:
            self.sockets.pop(side).close()
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 1000)  # the 'shutdown' that ends the session gets out at close
        socket.setsockopt(zmq.RCVHWM, STREAM_QUEUE)
        socket.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 10000)
        if keys is not None:
            keys.configure_client(socket)
        self.monitors[side] = ConnectionWatch(socket, endpoint, keys is not None, local=process is not None or
                                              pid is not None)
        socket.connect(endpoint)
        self.sockets[side] = socket
        self.keys[side] = keys
        worker = WorkerProcess(side, backend, f"listening at {endpoint}", process,
                               log_path or self.logdir / f"worker-{side}.log", endpoint=endpoint, pid=pid)
        self.workers[side] = worker
        worker.last_command = "hello"
        socket.send_multipart(encode({"seq": 0, "cmd": "hello", "args": {"take_over": take_over}}))
        return worker

    def _send_frames(self, side: str, frames: list, flags: int = 0) -> None:
        """One message to a side's worker: through the ROUTER bound for it, or the DEALER connected to it."""
        if self.workers[side].listening:
            self.sockets[side].send_multipart(frames, flags=flags, copy=False)
        else:
            self.sockets[side].send_multipart([side.encode(), *frames], flags=flags, copy=False)

    def _bind(self, side: str) -> str:
        """A socket of the coordinator's for this worker alone. Its receive queue holds at most
        STREAM_QUEUE messages (and the worker's send queue as many): a worker the coordinator does
        not read waits, holding its own results, instead of filling the coordinator's memory."""
        if side in self.sockets:
            self.sockets.pop(side).close()
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.RCVHWM, STREAM_QUEUE)
        self.sockets[side] = socket
        return _bind_local(socket, self.logdir / f"{side}-{next(self._binds)}.sock")

    def wait_hello(self, side: str) -> dict:
        worker = self.workers[side]
        header, _ = self._receive(side, seq=0, deadline=time.monotonic() + self.timeouts.start, expect="hello")
        if header.get("protocol") != PROTOCOL_VERSION:
            raise WorkerFailure(side, worker.backend, "start",
                                f"speaks protocol {header.get('protocol')!r}, kdiff speaks {PROTOCOL_VERSION}",
                                "the worker's environment has another kdiff version; recreate it with 'kdiff env create'")
        worker.hello = header
        if worker.listening and isinstance(header.get("session"), str):
            self.keeper.keep(worker.endpoint, self.keys.get(side), header["session"])
        return header

    def close(self) -> None:
        """Ask every worker to stop, then kill whatever is still running. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for side, worker in self.workers.items():
            if worker.exit_status() is None:  # a listening worker: the session ends, the worker goes on
                try:
                    self._send_frames(side, encode({"seq": self.last_seq + 1, "cmd": "shutdown"}), zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
        deadline = time.monotonic() + 3.0
        for worker in self.workers.values():
            if worker.process is None or worker.listening:
                continue
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            _live_processes.discard(worker.process)
        self.heartbeats.stopped.set()
        self.heartbeats.join(timeout=2)
        self.keeper.stopped.set()
        if self.keeper.is_alive():
            self.keeper.join(timeout=2)
        for watch in self.monitors.values():
            watch.close()
        for socket in self.sockets.values():
            socket.close()
        self.context.term()
        if not self.keep_logs:
            shutil.rmtree(self.logdir, ignore_errors=True)
            return
        for leftover in self.logdir.glob("*.sock"):  # the logs stay, the sockets' files go
            leftover.unlink(missing_ok=True)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- calls --------------------------------------------------------------------------
    def send(self, side: str, cmd: str, args: dict | None = None, arrays: dict | None = None) -> int:
        worker = self.workers[side]
        worker.last_command = cmd
        self.last_seq = seq = self.last_seq + 1
        self.unanswered.setdefault(side, set()).add(seq)
        try:
            self._send_frames(side, encode({"seq": seq, "cmd": cmd, "args": args or {}}, arrays))
        except zmq.ZMQError as exc:
            raise self._failure(side, f"could not be reached ({exc})") from exc
        return seq

    def call(self, side: str, cmd: str, args: dict | None = None, arrays: dict | None = None,
             timeout: float | None = None) -> tuple[dict, dict]:
        seq = self.send(side, cmd, args, arrays)
        deadline = time.monotonic() + (timeout or self.timeouts.call)
        header, result_arrays = self._receive(side, seq, deadline, expect="reply")
        return header.get("result") or {}, result_arrays

    def receive_any(self, pending: dict[str, int], deadline: float, hold: tuple = ()) -> tuple[str, dict, dict]:
        """The next message from any side in ``pending`` (side -> seq it waits for); sides in
        ``hold`` are not read meanwhile (their worker waits), unless no other side is pending."""
        return self._receive_from(pending, deadline, hold)

    def replies(self, pending: dict[str, int], timeout: float | None = None) -> dict[str, dict]:
        """The results of calls sent to several sides at once (side -> seq), as each side answers."""
        deadline = time.monotonic() + (timeout or self.timeouts.call)
        replies = {}
        waiting = dict(pending)
        while waiting:
            side, header, _ = self._receive_from(waiting, deadline)
            if header.get("type") != "reply":
                raise self._failure(side, f"sent a '{header.get('type')}' message where a reply was due")
            replies[side] = header.get("result") or {}
            del waiting[side]
        return replies

    def _receive(self, side: str, seq: int, deadline: float, expect: str) -> tuple[dict, dict]:
        _, header, arrays = self._receive_from({side: seq}, deadline)
        if header.get("type") != expect:
            raise self._failure(side, f"answered a '{header.get('type')}' message where '{expect}' was due")
        return header, arrays

    def _receive_from(self, pending: dict[str, int], deadline: float, hold: tuple = ()) -> tuple[str, dict, dict]:
        started = time.monotonic()
        while True:
            for side, seq in pending.items():
                inbox = self.inbox.setdefault(side, deque())
                while inbox:
                    header, arrays = inbox.popleft()
                    if header.get("type") == "hello" or header.get("seq") == seq:
                        if header.get("type") == "reply":
                            self.unanswered.get(side, set()).discard(seq)
                        return side, header, arrays
                    # otherwise: a late answer to an earlier, abandoned call
            readable = [side for side in pending if side not in hold] or list(pending)
            for side, seq in pending.items():
                # a listening worker says nothing before its hello (it may still be importing its framework)
                watched = side in readable and not (seq == 0 and self.workers[side].listening)
                self._check_alive(side, deadline, max(started, self.last_heard.get(side, started)) if watched else None)
            self._read_turn += 1  # take turns among sides with messages waiting
            readable = readable[self._read_turn % len(readable):] + readable[:self._read_turn % len(readable)]
            poller = zmq.Poller()
            for side in readable:
                poller.register(self.sockets[side], zmq.POLLIN)
            ready = dict(poller.poll(200))
            side = next((side for side in readable if self.sockets[side] in ready), None)
            if side is not None:
                self._read_one(side)

    def _read_one(self, side: str) -> None:
        """Move one message from the side's socket into its inbox, checking it on the way: a message
        kdiff cannot read, an answer to a call it did not make or that was answered already, an error,
        are the worker's failure; a progress message only says that the worker is at work."""
        frames = self.sockets[side].recv_multipart(copy=False)
        if not self.workers[side].listening:  # a ROUTER's message starts with the sender's identity
            identity, *frames = frames
            if identity.bytes.decode(errors="replace") != side:
                return
        try:
            header, arrays = decode(frames)
        except ProtocolError as exc:
            raise self._failure(side, f"answered a malformed message ({exc})") from exc
        self.last_heard[side] = time.monotonic()
        kind, seq = header.get("type"), header.get("seq")
        if kind == "error":
            self._raise_worker_error(side, header.get("error") or {})
        if kind not in ("hello", "reply", "part", "progress"):
            raise self._failure(side, f"answered an unknown message type {kind!r}")
        if kind == "hello" or (kind == "progress" and seq == 0):
            if kind == "hello":
                self.inbox.setdefault(side, deque()).append((header, arrays))
            return
        if type(seq) is not int or seq < 1 or seq > self.last_seq:
            raise self._failure(side, f"answered a '{kind}' for call {seq!r}, which kdiff never made")
        if kind == "progress":
            return  # (one may come just after its call's reply)
        if seq not in self.unanswered.get(side, ()):
            raise self._failure(side, f"answered call {seq} again, after its reply")
        self.inbox.setdefault(side, deque()).append((header, arrays))

    def _check_alive(self, side: str, deadline: float, heard: float | None = None) -> None:
        """The worker still runs, the deadline has not passed, its heartbeat goes on, and (``heard``: when
        it was last heard of, or when kdiff began to wait for it; None while it is left unread on purpose)
        it has said something about its call within the last ``timeouts.silence`` seconds."""
        worker = self.workers[side]
        if side in self.monitors:
            self.monitors[side].check(self.workers[side], waiting_for_hello=not worker.hello)
        code = worker.exit_status()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise self._failure(side, f"the worker process {how}")
        now = time.monotonic()
        if now > deadline:
            hint = "raise the limit with --timeout if this model is very large"
            if worker.backend.startswith("theano"):  # (InceptionV3: over an hour in Theano's graph optimiser)
                hint += ("; a deep model can keep Theano's graph optimiser busy for an hour: run with "
                         "THEANO_FLAGS=optimizer=fast_compile (InceptionV3 then loads in about a minute)")
            raise self._failure(side, "no answer before the deadline", hint)
        beat = None if worker.listening else self.heartbeats.last_seen.get(side)
        if beat is not None and now - beat > self.timeouts.liveness:
            raise self._failure(side, f"no heartbeat for {now - beat:.0f} s: the worker is stuck")
        if heard is not None and now - heard > self.timeouts.silence:
            raise self._failure(side, f"sent nothing about its call for {now - heard:.0f} s although its heartbeat "
                                      f"goes on (a worker at work says so every second): it does not answer")

    def all_alive(self) -> bool:
        return all(worker.exit_status() is None for worker in self.workers.values())

    def _raise_worker_error(self, side: str, error: dict) -> None:
        worker = self.workers[side]
        if error.get("kind") == "input":
            raise InputError(error.get("code") or "bad-model-input",
                             f"{worker.backend} (side {side}): {error.get('message')}", error.get("hint") or "")
        raise self._failure(side, f"{error.get('code')}: {error.get('message')}", detail=error.get("traceback") or "")

    def _failure(self, side: str, message: str, hint: str = "", detail: str = "") -> WorkerFailure:
        worker = self.workers[side]
        self.keep_logs = True
        where = (f"the worker's log is {worker.log_path}" if worker.log_path.exists() or not worker.listening
                 else f"see what 'kdiff worker' printed on the host of {worker.endpoint}")
        return WorkerFailure(side, worker.backend, worker.last_command, message, hint or where,
                             detail or worker.log_tail())

