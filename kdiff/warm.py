"""Warm workers (``kdiff --warm``, ``KDIFF_WARM=1``): listening workers (backends.listen) that outlive
the run that started them, so that the next run on the same environments finds its frameworks
imported and, for the same files, its model loaded and compiled.

They live in ``$KDIFF_HOME/warm/`` (or ``$KDIFF_WARM_DIR``; a folder only its user may open): per slot ``KEY-N.json`` (the
worker's pid and endpoint, written by the worker once it listens), ``KEY-N.lock``, ``KEY-N.log``
and the Unix socket ``KEY-N.sock``. KEY names what the worker was started as (side, backend,
interpreter, options, and kdiff's own source, so that a changed kdiff never talks to an old
worker). A run takes a slot by locking its ``.lock`` file (``flock``: the kernel lets go of it when
the run ends, however it ends); a free slot without a live worker gets one. A warm worker exits
after ``KDIFF_WARM_IDLE`` seconds (default 900) without a session; ``kdiff serve --stop`` stops them
all, and ``kdiff serve`` lists them."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kdiff import __version__
from kdiff.environments import kdiff_home
from kdiff.errors import InputError
from kdiff.protocol.wire import PROTOCOL_VERSION
from kdiff.workers import SOURCE_ROOT, thread_pools_for_a_side, worker_environment

SLOTS = 4               # warm workers per key: as many runs on the same sides at once
IDLE_SECONDS = 900.0


@dataclass
class Lease:
    """A slot this run holds: its worker's endpoint, process (started by this run) or pid."""
    endpoint: str
    pid: int
    process: subprocess.Popen | None
    log_path: Path
    lock: object   # the open, locked .lock file: closing it gives the slot back

    def release(self) -> None:
        if not self.lock.closed:
            self.lock.close()


def warm_dir() -> Path:
    folder = Path(os.environ.get("KDIFF_WARM_DIR") or kdiff_home() / "warm")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)  # its Unix sockets take calls with no keys: only this user may reach them
    except OSError as exc:
        raise InputError("kdiff-home-unwritable", f"the warm workers' folder {folder} cannot be made "
                         f"({exc.strerror or exc})", "point KDIFF_HOME at a writable folder, or leave out --warm") from exc
    return folder


def enabled(flag: bool) -> bool:
    return flag or os.environ.get("KDIFF_WARM", "") not in ("", "0")


def idle_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get("KDIFF_WARM_IDLE", IDLE_SECONDS)))
    except ValueError:
        return IDLE_SECONDS


def source_fingerprint() -> str:
    """What changes whenever kdiff's worker-side code does: its files' names, sizes and times."""
    digest = hashlib.sha256(f"{PROTOCOL_VERSION} {__version__} {SOURCE_ROOT}".encode())
    for folder in ("backends", "kdiff/protocol"):
        for path in sorted((SOURCE_ROOT / folder).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path.relative_to(SOURCE_ROOT)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def slot_key(side: str, backend: str, python: str, options: dict, worker_module: str | None) -> str:
    described = json.dumps({"side": side, "backend": backend, "python": str(Path(python).absolute()),
                            "options": sorted(options.items()), "worker_module": worker_module,
                            "source": source_fingerprint()})
    return f"{backend}-{side}-{hashlib.sha256(described.encode()).hexdigest()[:12]}"


def lease(side: str, backend: str, python: str, options: dict, worker_module: str | None) -> Lease | None:
    """A warm worker for this side, started if no free slot has one; None when every slot is taken."""
    folder = warm_dir()
    key = slot_key(side, backend, python, options, worker_module)
    for number in range(SLOTS):
        base = folder / f"{key}-{number}"
        lock = open(base.with_suffix(".lock"), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        info = read_info(base.with_suffix(".json"))
        if info is not None:
            return Lease(info["endpoint"], info["pid"], None, base.with_suffix(".log"), lock)
        return _start(base, side, backend, python, options, worker_module, lock)
    return None


def _start(base: Path, side, backend, python, options, worker_module, lock) -> Lease:
    """Start a warm worker in this slot and wait until it listens (its .json written)."""
    info_path = base.with_suffix(".json")
    info_path.unlink(missing_ok=True)
    base.with_suffix(".sock").unlink(missing_ok=True)
    socket_path = base.with_suffix(".sock")
    endpoint = f"ipc://{socket_path}" if len(str(socket_path)) < 100 else "tcp://127.0.0.1:*"
    env = worker_environment()
    if side in ("a", "b"):
        for name, value in thread_pools_for_a_side().items():
            env.setdefault(name, value)
    command = [python, "-m", "backends.listen", "--backend", backend, "--endpoint", endpoint,
               "--idle-timeout", str(idle_seconds()), "--info-file", str(info_path)]
    for name, value in options.items():
        command += ["--option", f"{name}={value}"]
    if worker_module:
        command += ["--worker-module", worker_module]
    log_path = base.with_suffix(".log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True, cwd=str(SOURCE_ROOT))
    return Lease(endpoint, process.pid, process, log_path, lock)


def wait_listening(lease_: Lease, deadline: float) -> str:
    """The endpoint of a worker this run started, once it listens (its .json written)."""
    info_path = lease_.log_path.with_suffix(".json")
    while time.monotonic() < deadline:
        info = read_info(info_path, lease_.pid)
        if info is not None:
            return info["endpoint"]
        if lease_.process is not None and lease_.process.poll() is not None:
            break
        time.sleep(0.05)
    return ""


def read_info(path: Path, pid: int | None = None) -> dict | None:
    """A slot's worker as its .json says, if that worker still runs (and is one: its command line says so)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or type(info.get("pid")) is not int or not isinstance(info.get("endpoint"), str):
        return None
    if (pid is not None and info["pid"] != pid) or not is_listening_worker(info["pid"]):
        return None
    return info


def is_listening_worker(pid: int) -> bool:
    try:
        return b"backends.listen" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def slots() -> list[dict]:
    """Every warm worker's slot: its name, backend, pid, endpoint, whether a run holds it now."""
    found = []
    for info_path in sorted(warm_dir().glob("*.json")):
        info = read_info(info_path)
        if info is None:
            continue
        busy = False
        with open(info_path.with_suffix(".lock"), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = True
        found.append({**info, "slot": info_path.stem, "busy": busy})
    return found


def stop_all(wait: float = 5.0) -> list[dict]:
    """Stop every warm worker (SIGTERM, then SIGKILL); the slots they held."""
    stopped = slots()
    for slot in stopped:
        try:
            os.kill(slot["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    for slot in stopped:
        while is_listening_worker(slot["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_listening_worker(slot["pid"]):
            try:
                os.kill(slot["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    for leftover in warm_dir().glob("*"):
        if leftover.suffix in (".json", ".sock", ".log"):
            leftover.unlink(missing_ok=True)
    for lock_path in warm_dir().glob("*.lock"):  # a slot no run holds now goes too
        with open(lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            lock_path.unlink(missing_ok=True)
    return stopped
