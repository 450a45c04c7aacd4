"""The backends kdiff knows, and the virtual environments their workers run in.

Every environment is a ``python -m venv`` built from a fully pinned lock file kept beside
the backend's code (``backends/<name>/requirements*.txt``), installed with ``--no-deps`` so
that what runs is exactly what the lock says. Environments live in one cache folder,
``$KDIFF_HOME/envs`` (default ``~/.cache/kdiff/envs``). An environment whose lock changed
since it was built is rebuilt on next use.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kdiff.errors import InputError, KdiffError
from kdiff.workers import SOURCE_ROOT

BACKENDS_DIR = SOURCE_ROOT / "backends"
MARKER = "kdiff-env.json"


@dataclass(frozen=True)
class EnvSpec:
    name: str
    lock: Path
    description: str


@dataclass(frozen=True)
class BackendSpec:
    name: str
    description: str
    env_by_keras_major: dict  # model file's Keras major version (1, 2, 3) -> env name; None for any


ENVS = {
    spec.name: spec
    for spec in (
        EnvSpec("theano", BACKENDS_DIR / "theano" / "requirements-keras2.txt",
                "Keras 2.3.1 on theano-pymc 1.1.2 (numpy 1.23.5, scipy 1.10.1)"),
        EnvSpec("theano-keras1", BACKENDS_DIR / "theano" / "requirements-keras1.txt",
                "Keras 1.2.2 on theano-pymc 1.1.2 (numpy 1.23.5, scipy 1.10.1)"),
        EnvSpec("tensorflow", BACKENDS_DIR / "tensorflow" / "requirements.txt", "Keras 3 on TensorFlow (CPU)"),
        EnvSpec("jax", BACKENDS_DIR / "jax" / "requirements.txt", "Keras 3 on JAX (CPU)"),
        EnvSpec("torch", BACKENDS_DIR / "torch" / "requirements.txt", "Keras 3 on PyTorch (CPU)"),
        EnvSpec("tf-keras", BACKENDS_DIR / "tf_keras" / "requirements.txt", "tf_keras (Keras 2 API) on TensorFlow 2"),
    )
}

BACKENDS = {
    spec.name: spec
    for spec in (
        BackendSpec("theano", "the original Keras on Theano (the Theano-era reference)",
                    {1: "theano-keras1", 2: "theano"}),
        BackendSpec("tensorflow", "Keras 3, TensorFlow backend", {None: "tensorflow"}),
        BackendSpec("jax", "Keras 3, JAX backend", {None: "jax"}),
        BackendSpec("torch", "Keras 3, PyTorch backend", {None: "torch"}),
        BackendSpec("tf-keras", "tf_keras: the Keras 2 API on TensorFlow 2", {None: "tf-keras"}),
    )
}


def kdiff_home() -> Path:
    return Path(os.environ.get("KDIFF_HOME") or Path.home() / ".cache" / "kdiff")


def env_dir(name: str) -> Path:
    return kdiff_home() / "envs" / name


def env_python(name: str) -> Path:
    return env_dir(name) / "bin" / "python"


def backend_spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise InputError("unknown-backend", f"unknown backend '{name}'",
                         f"choose one of: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def env_for(backend: str, keras_major: int) -> str:
    spec = backend_spec(backend)
    if None in spec.env_by_keras_major:
        return spec.env_by_keras_major[None]
    if keras_major not in spec.env_by_keras_major:
        raise InputError("backend-cannot-load", f"the {backend} backend cannot load a Keras {keras_major} model",
                         "compare Keras 3 files between tensorflow, jax, torch (e.g. --a tensorflow --b jax)")
    return spec.env_by_keras_major[keras_major]


def env_spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise InputError("unknown-env", f"unknown environment '{name}'", f"choose one of: {', '.join(ENVS)}")
    return ENVS[name]


def lock_digest(spec: EnvSpec) -> str:
    return hashlib.sha256(spec.lock.read_bytes()).hexdigest()


def env_state(name: str) -> str:
    """'ready', 'stale' (its lock changed since it was built) or 'missing'."""
    marker = env_dir(name) / MARKER
    if not marker.is_file() or not env_python(name).exists():
        return "missing"
    try:
        recorded = json.loads(marker.read_text()).get("lock_sha256")
    except (OSError, ValueError):
        return "missing"
    return "ready" if recorded == lock_digest(env_spec(name)) else "stale"


def ensure_env(name: str, log: Callable[[str], None] = lambda line: None) -> Path:
    """The environment's interpreter, building the environment first if needed. An environment is
    'ready' only once its marker is written, after every step of its build succeeded: one whose build
    was interrupted (kdiff killed, disk full) is found half-built and built again."""
    spec = env_spec(name)
    if env_state(name) == "ready":
        _link_kdiff(env_dir(name))  # to this kdiff, which may not be the one that built the environment
        return env_python(name)
    target = env_dir(name)
    lock_path = target.parent / f".{name}.lock"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(lock_path, "w")
    except OSError as exc:
        raise _home_unwritable(target.parent, exc) from exc
    with lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another kdiff may be building it right now
        if env_state(name) != "ready":
            _build(spec, target, log, lock_file.fileno())
    return env_python(name)


def _home_unwritable(folder: Path, exc: OSError) -> KdiffError:
    return InputError("kdiff-home-unwritable", f"kdiff cannot write its environments into {folder} ({exc.strerror or exc})",
                      "make that folder writable, or point KDIFF_HOME at a writable folder with free space")


def _build(spec: EnvSpec, target: Path, log: Callable[[str], None], lock_fd: int) -> None:
    build_log = target.parent / f"{spec.name}.build.log"
    try:
        if target.exists():
            shutil.rmtree(target)
        out = open(build_log, "w")
    except OSError as exc:
        raise _home_unwritable(target.parent, exc) from exc
    log(f"creating environment '{spec.name}' in {target} ({spec.description})")
    steps = [
        [_base_python(), "-m", "venv", str(target)],
        [str(target / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-input", "-r", str(spec.lock)],
    ]
    with out:
        for command in steps:
            log(" ".join(command[-3:]) if "pip" in command else "python -m venv")
            if _run_build_step(command, out, lock_fd) != 0:
                tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-20:])
                no_space = "No space left on device" in tail or "Errno 28" in tail
                raise KdiffError("env-create-failed", f"could not create environment '{spec.name}'"
                                 + (f": no space left in {target.parent}" if no_space else ""),
                                 f"see {build_log}; " + ("free some space or point KDIFF_HOME elsewhere, then run "
                                                         if no_space else "fix the cause and run ")
                                 + f"'kdiff env create {spec.name}'", tail)
    try:
        _link_kdiff(target)
        (target / MARKER).write_text(json.dumps({"name": spec.name, "lock": str(spec.lock),
                                                 "lock_sha256": lock_digest(spec)}, indent=2))
    except OSError as exc:
        raise _home_unwritable(target.parent, exc) from exc
    log(f"environment '{spec.name}' ready")


def _run_build_step(command: list[str], out, lock_fd: int) -> int:
    """Run one build step in a process group of its own, which never outlives kdiff: the kernel kills it
    when kdiff dies (PR_SET_PDEATHSIG, on Linux), and any other way out of kdiff (Ctrl-C, SIGTERM, an
    error) kills the whole group. The step holds the environment's lock too (its file descriptor is
    inherited), so that no other kdiff removes the folder it is writing into while it runs."""
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, pass_fds=(lock_fd,), preexec_fn=_die_with_parent)
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _link_kdiff(target: Path) -> None:
    """Make this kdiff (its wire format, workers and probe) importable in the environment: a .pth
    file naming this source tree, rewritten when another kdiff (a newer release, another checkout)
    built the environment, so a job that imports kdiff.probe there runs the same code as kdiff."""
    wanted = str(SOURCE_ROOT) + "\n"
    for purelib in target.glob("lib/python3*/site-packages"):
        link = purelib / "kdiff-source.pth"
        if not link.is_file() or link.read_text() != wanted:
            written = link.with_name(f".kdiff-source.{os.getpid()}.tmp")
            written.write_text(wanted)
            os.replace(written, link)  # a job starting meanwhile reads the old line or the new, never half of one


def _base_python() -> str:
    """A Python 3.11 to build environments with: this one if it is 3.11, else python3.11."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise KdiffError("python311-missing", "kdiff's backend environments need Python 3.11, which was not found",
                         "install Python 3.11 (python3.11 on PATH), or run kdiff itself with Python 3.11")
    return found


def describe_envs() -> list[dict]:
    return [{"name": name, "state": env_state(name), "path": str(env_dir(name)), "description": spec.description}
            for name, spec in ENVS.items()]


