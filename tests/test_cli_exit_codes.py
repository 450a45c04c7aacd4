"""kdiff's own bugs have an exit code of their own (never 1, "a divergence was found"), a one-line
message that says whose fault it is, and the traceback in a log file that the message names."""
import re
from pathlib import Path

from kdiff import cli
from kdiff.errors import EXIT_DIVERGED, EXIT_INTERNAL


def test_a_bug_of_kdiffs_own_is_exit_4_with_its_traceback_in_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDIFF_HOME", str(tmp_path / "home"))

    def broken(*args, **kwargs):
        return {}["no such key"]

    monkeypatch.setattr(cli, "run_diff_command", broken)
    model = tmp_path / "model.json"
    model.write_text("{}")
    code = cli.main([str(model), str(model), str(model)])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL == 4 and code != EXIT_DIVERGED
    assert "kdiff failed: KeyError: 'no such key'. This is a bug of kdiff's own" in err
    assert "Traceback" not in err
    log = Path(re.search(r"the traceback is in (\S+);", err).group(1))
    assert log.parent == tmp_path / "home" / "logs"
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
