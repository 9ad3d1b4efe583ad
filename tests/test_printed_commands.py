"""Every command mlp_sweep prints for a user to paste is one a POSIX shell reads back whole:
the retry line of a sweep whose folder has a space and a quote in its name, pasted into bash,
resumes that sweep (mlp_sweep.labels.command builds every such line)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mlp_sweep.labels import command, hydra_value, resume_command
from tests.helpers import cli_env, run_command

# Stopped at its time limit within its first epoch: a run that did not finish, resumable.
TIMED_OUT = ["data=synthetic", "data.n_train=20000", "trainer.time_limit=0.001", "model.act=relu"]


def test_the_printed_retry_line_pasted_into_bash_resumes_the_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "int sweep's dir"
    first = run_command(
        "-m", "hydra/launcher=basic", *TIMED_OUT, f"hydra.sweep.dir={hydra_value(str(sweep))}",
        cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 1, first.stderr[-3000:]
    last = first.stderr.strip().splitlines()[-1]
    line = last.split("retry them with: ", 1)[1]
    assert line == resume_command(sweep)
    pasted = subprocess.run(
        ["bash", "-c", line.replace("python ", "exec python ", 1)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    # The time limit is replayed, so the run stops again; what matters is that bash handed
    # the folder over whole and the sweep there ran its second attempt.
    assert pasted.returncode == 1, pasted.stderr[-3000:]
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    assert record["status"] == "timeout" and record["attempt"] == 2


def test_commands_quote_what_the_shell_would_split() -> None:
    assert command("model.act=relu,selu") == "python -m mlp_sweep model.act=relu,selu"
    assert resume_command("/a/int sweep's dir") == (
        "python -m mlp_sweep --resume '/a/int sweep'\"'\"'s dir'"
    )
    assert hydra_value("/a/b c") == "'/a/b c'" and hydra_value("/a/b") == "/a/b"
