"""Environment building, from scratch, with a tiny lock (the real locks are built by the
other tests' first use, exactly as a user's first run builds them)."""
import subprocess
import sys

import pytest

from kdiff import environments
from kdiff.cli import main
from kdiff.environments import EnvSpec, ensure_env, env_state
from kdiff.errors import KdiffError
from kdiff.workers import SOURCE_ROOT


@pytest.fixture
def tiny_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))
    lock = tmp_path / "requirements.txt"
    lock.write_text("six==1.17.0\n")
    monkeypatch.setitem(environments.ENVS, "tiny", EnvSpec("tiny", lock, "a test environment"))
    return lock


def test_an_environment_is_built_on_first_use_and_can_import_kdiff(tiny_env):
    assert env_state("tiny") == "missing"
    log = []
    python = ensure_env("tiny", log.append)
    assert env_state("tiny") == "ready" and any("creating environment 'tiny'" in line for line in log)
    probe = subprocess.run([str(python), "-c", "import sys, six, kdiff; print(sys.version_info[:2], six.__version__, kdiff.__file__)"],
                           capture_output=True, text=True)
    assert probe.stdout.split() == ["(3,", "11)", "1.17.0", str(SOURCE_ROOT / "kdiff" / "__init__.py")], probe.stderr
    assert ensure_env("tiny", log.append) == python and len([l for l in log if "creating" in l]) == 1


def test_an_environment_built_by_another_kdiff_imports_this_one(tiny_env):
    """A job that imports kdiff.probe in a kdiff environment gets the kdiff that uses the environment
    now, not the checkout (or release) that built it."""
    python = ensure_env("tiny")
    (link,) = (python.parent.parent / "lib").glob("python3*/site-packages/kdiff-source.pth")
    link.write_text("/somewhere/else/kdiff-checkout\n")
    assert ensure_env("tiny") == python
    where = subprocess.run([str(python), "-c", "import kdiff; print(kdiff.__file__)"], capture_output=True, text=True)
    assert where.stdout.strip() == str(SOURCE_ROOT / "kdiff" / "__init__.py"), where.stderr


def test_a_changed_lock_makes_the_environment_stale_and_it_is_rebuilt(tiny_env):
    python = ensure_env("tiny")
    tiny_env.write_text("six==1.16.0\n")
    assert env_state("tiny") == "stale"
    ensure_env("tiny")
    version = subprocess.run([str(python), "-c", "import six; print(six.__version__)"], capture_output=True, text=True)
    assert version.stdout.strip() == "1.16.0" and env_state("tiny") == "ready"


def test_a_failed_build_says_what_to_do(tiny_env):
    tiny_env.write_text("this-package-does-not-exist-kdiff==0.0.1\n")
    with pytest.raises(KdiffError) as failure:
        ensure_env("tiny")
    assert failure.value.reference == "env-create-failed"
    assert "kdiff env create tiny" in failure.value.hint and "this-package-does-not-exist-kdiff" in failure.value.detail
    assert env_state("tiny") == "missing"


def test_env_commands(tiny_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / ("a-long-folder-name-" * 6) / "home"))  # paths wider than 80
    assert main(["env", "path", "tiny"]) == 2
    assert "environment 'tiny' does not exist yet" in capsys.readouterr().err
    assert main(["env", "create", "tiny"]) == 0
    capsys.readouterr()
    assert main(["env", "path", "tiny"]) == 0
    assert capsys.readouterr().out.strip().endswith("envs/tiny/bin/python")
    assert main(["env", "list"]) == 0
    listing = capsys.readouterr().out
    names = [line.split()[0] for line in listing.splitlines()[1:] if line.strip() and not line.startswith(" " * 12)]
    for name in ("theano", "theano-keras1", "tensorflow", "jax", "torch", "tf-keras", "tiny"):
        assert name in names, listing  # whole, however long the paths beside them (they fold)
    assert main(["env", "create", "nonsense"]) == 2
    assert "unknown environment 'nonsense'" in capsys.readouterr().err


def test_every_backend_names_an_environment_with_a_lock():
    for backend in environments.BACKENDS.values():
        for env in backend.env_by_keras_major.values():
            assert environments.ENVS[env].lock.is_file(), env
    assert sys.version_info >= (3, 10)


KILLED_BUILD = """
import sys, time
from pathlib import Path
from kdiff import environments
from kdiff.environments import EnvSpec, ensure_env
lock = Path(sys.argv[1])
environments.ENVS["tiny"] = EnvSpec("tiny", lock, "a test environment")
environments._base_python = lambda: sys.argv[2]  # a 'python -m venv' that takes its time
ensure_env("tiny")
"""


def test_a_kdiff_killed_while_it_builds_leaves_no_build_process_and_a_half_built_environment_is_rebuilt(
        tiny_env, tmp_path):
    import os
    import signal
    import time

    from tests.helpers import wait_until_gone

    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\nmkdir -p \"$3/bin\" && echo $$ > {tmp_path}/builder.pid && exec sleep 60\n")
    slow.chmod(0o755)
    kdiff = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tiny_env), str(slow)],
                             cwd=str(SOURCE_ROOT), env={**os.environ})
    pid_file = tmp_path / "builder.pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    builder = int(pid_file.read_text())
    assert wait_until_gone([builder], 0.3) == [builder]  # the build step runs
    kdiff.send_signal(signal.SIGKILL)
    kdiff.wait()
    assert wait_until_gone([builder], 5) == [], "the build step outlived the kdiff that started it"
    assert env_state("tiny") == "missing"  # half-built: a folder, no marker
    python = ensure_env("tiny")
    assert env_state("tiny") == "ready" and python.exists()


@pytest.mark.parametrize("home", ["a-file/home", "/proc/kdiff-home"])
def test_an_unwritable_kdiff_home_is_bad_input_naming_it(tiny_env, tmp_path, monkeypatch, capsys, home):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / home) if not home.startswith("/") else home)
    assert main(["env", "create", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "kdiff cannot write its environments into" in err and "KDIFF_HOME" in err and "Traceback" not in err


def test_a_kdiff_home_whose_theano_compile_folder_cannot_be_written_is_named_not_the_model(tmp_path, monkeypatch):
    from kdiff.session import worker_options as _worker_options
    from kdiff.errors import InputError

    monkeypatch.setenv("KDIFF_HOME", str(tmp_path))
    (tmp_path / "theano-compiledir").write_text("a file where the folder should be")
    with pytest.raises(InputError) as refused:
        _worker_options("theano")
    assert refused.value.reference == "kdiff-home-unwritable" and "Theano's compile folder" in refused.value.message
    assert _worker_options("tensorflow") == {}
