"""What a sweep prints: plain lines when not on a terminal, a live display on one, quiet logs,
plots beside the summary, and tab completion through the console script."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlp_sweep.results.progress import Progress
from tests.helpers import cli_env

TINY = ["data=synthetic", "data.n_train=400", "data.n_test=200", "trainer.batch_size=50"]
RUN_LINE = re.compile(
    r"^\[(\d)/4\] model\.act=(relu|leaky|selu|softplus)  ok  test_acc 0\.\d{4}  \d+\.\d s$"
)


def test_a_four_run_sweep_off_a_terminal_prints_one_line_per_run(activation_sweep) -> None:
    done, sweep = activation_sweep  # conftest: -m model.act=relu,leaky,selu,softplus, 2 epochs
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table_start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("model.act"))
    table = lines[table_start : table_start + 5]
    around = lines[:table_start] + lines[table_start + 5 :]
    assert len(around) <= 12, done.stdout
    progress = [line for line in around if RUN_LINE.match(line)]
    assert [int(RUN_LINE.match(line)[1]) for line in progress] == [1, 2, 3, 4]  # type: ignore[index]
    assert {RUN_LINE.match(line)[2] for line in progress} == {  # type: ignore[index]
        "relu", "leaky", "selu", "softplus",
    }  # fmt: skip
    assert [line.split()[0] for line in table[1:]] == ["relu", "leaky", "selu", "softplus"]
    assert f"summary: {sweep / 'summary.csv'} (4 runs)" in around
    assert f"plots: {sweep / 'curves.png'}, {sweep / 'comparison.png'}" in around
    # Hydra's per-job launch lines and the per-epoch lines: in each run's log, not the console.
    assert "epoch 1/2" not in done.stdout + done.stderr
    assert "#0 :" not in done.stdout + done.stderr
    assert done.stderr.strip() == ""
    for job in range(4):
        log = (sweep / str(job) / "mlp_sweep.log").read_text()
        assert f"job #{job}: model.act=" in log
        assert "epoch 1/2" in log and "epoch 2/2" in log


def test_verbose_brings_the_launch_and_epoch_lines_back(
    tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = run_cli("-m", "model.act=relu,selu", *TINY, "trainer.epochs=2", "verbose=true")
    assert done.returncode == 0, done.stderr
    assert "#0 : model.act=relu" in done.stdout
    assert done.stdout.count("epoch 2/2") == 2
    assert "[2/2] model.act=" in done.stdout


def test_a_single_run_keeps_its_epoch_lines(single_run) -> None:
    done, _ = single_run  # conftest: SINGLE_RUN, 2 epochs
    assert done.returncode == 0, done.stderr
    assert "epoch 1/2" in done.stdout and "epoch 2/2" in done.stdout


def read_pty(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other side closed: the command ended
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_on_a_terminal_the_sweep_is_one_live_display(tmp_path: Path) -> None:
    """A real pseudo-terminal: the display redraws in place, then leaves the finished lines."""
    import pty

    main, child = pty.openpty()
    env = {**cli_env(), "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp_sweep", "-m", "model.act=relu,selu", *TINY]
        + ["data.n_train=2000", "trainer.epochs=6", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
        start_new_session=True,
    )
    os.close(child)
    try:
        raw = read_pty(main, proc, timeout=240)
    finally:
        os.close(main)
    assert proc.wait(30) == 0, raw.decode(errors="replace")
    text = raw.decode()
    assert "\x1b[" in text and "\x1b[J" in text  # redrawn in place
    assert re.search(r"sweep 0/2 done, \d running  0:\d\d elapsed", text)
    assert re.search(r"  model\.act=(relu|selu)  epoch \d/6", text)
    assert "[1/2] model.act=" in text and "[2/2] model.act=" in text
    # After the last redraw, nothing of the display is left: the finished lines, the table.
    tail = text[text.rindex("\x1b[J") :]
    assert not re.search(r"sweep \d/2 done", tail) and "model.act status" in tail


def write_record(job_dir: Path, **fields: Any) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "status": "running",
        "overrides": [f"model.act={job_dir.name}", "data=synthetic"],
        "params": {"trainer.epochs": 4},
        "epochs_done": 0,
        "train_seconds": 0.0,
        "finished_at": None,
        **fields,
    }
    (job_dir / "metrics.json").write_text(json.dumps(record))


class Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_reports_each_finished_run_once_and_skips_what_finished_before(
    tmp_path: Path,
) -> None:
    done = {"status": "ok", "test_acc": 0.9, "train_seconds": 1.0, "epochs_done": 4}
    write_record(tmp_path / "0", **done, finished_at="yesterday")  # a resume: done before
    write_record(tmp_path / "1", status="failed", error="boom", finished_at="yesterday")
    out = Lines()
    progress = Progress(tmp_path, total=3, swept={"model.act"}, live=False, stream=out)  # type: ignore[arg-type]
    progress.start()
    progress.stop()
    assert out.text == ""  # nothing new yet
    write_record(tmp_path / "1", **done, finished_at="today")  # the failed one, retried
    write_record(tmp_path / "2", status="failed", error="ValueError: x", finished_at="today")
    progress.poll()
    progress.poll()
    assert out.text.splitlines() == [
        "[2/3] model.act=1  ok  test_acc 0.9000  1.0 s",
        "[3/3] model.act=2  failed  test_acc -  0.0 s  (ValueError: x)",
    ]


def test_completion_through_the_console_script_in_bash(tmp_path: Path) -> None:
    """`eval "$(mlp-sweep -sc install=bash)"`, then what bash offers after `mlp-sweep model.act=s`
    (the values mlp_sweep completes itself: each query is a process of the console script)."""
    here = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    script = shutil.which("mlp-sweep", path=here)
    if script is None:
        pytest.fail("the mlp-sweep console script is not installed: pip install -e .")
    bash = shutil.which("bash")
    assert bash is not None
    complete = (
        'eval "$(mlp-sweep -sc install=bash)"\n'
        "complete -p mlp-sweep\n"
        "line='mlp-sweep model.act=s'\n"
        'COMP_LINE="$line"; COMP_POINT=${#line}; read -ra COMP_WORDS <<< "$line"\n'
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        'hydra_bash_completion; echo "$line -> ${COMPREPLY[*]}"\n'
    )
    env = {**cli_env(), "PATH": f"{Path(script).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [bash, "-c", complete], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "hydra_bash_completion" in lines[0] and lines[0].endswith("mlp-sweep")
    assert set(lines[1].split(" -> ")[1].split()) == {
        "model.act=selu", "model.act=softplus", "model.act=sigmoid", "model.act=silu",
    }  # fmt: skip


@pytest.mark.parametrize(
    "line,offered", [("mlp-sweep model.a", "model.act="), ("mlp-sweep logg", "logger=")]
)
def test_completion_of_keys_and_groups(
    run_main, monkeypatch: pytest.MonkeyPatch, line: str, offered: str
) -> None:
    """Hydra's own completion, through the entry point: what hydra_bash_completion asks the
    script (`-sc query=bash` with COMP_LINE set), called here, filtered as its compgen does."""
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    done = run_main("-sc", "query=bash")
    assert done.returncode == 0, done.stderr
    word = line.split()[-1]
    assert offered in [choice for choice in done.stdout.split() if choice.startswith(word)]


def test_run_names_keep_the_swept_values_short() -> None:
    from mlp_sweep import labels

    swept = labels.swept_in_command(
        ["model.act=relu,selu", "data=synthetic", "seed=range(3)", "hparams_search=optuna"],
        {"optim": {"lr": "tag(log, interval(0.001, 0.5))"}, "model.init": "choice(a,b)"},
    )
    assert swept == {"model.act", "seed", "optim.lr", "model.init"}
    overrides = ["optim.lr=0.03028525153605885", "model.act=selu", "data=synthetic", "seed=2"]
    assert labels.label(overrides, swept) == "optim.lr=0.03029 model.act=selu seed=2"
    assert labels.label(["data=synthetic"], swept) == "data=synthetic"  # nothing swept: all


def test_a_log_line_comes_after_the_runs_that_finished_before_it(tmp_path: Path) -> None:
    import logging

    from mlp_sweep.results.console_filter import ConsoleFilter

    out = Lines()
    progress = Progress(tmp_path, total=1, swept=None, live=False, stream=out)  # type: ignore[arg-type]
    progress.start()
    try:
        write_record(tmp_path / "0", status="ok", test_acc=0.5, finished_at="now")
        record = logging.LogRecord("x", logging.WARNING, "", 0, "best trial 0", None, None)
        assert ConsoleFilter(mode="MULTIRUN").filter(record)
        assert out.text.startswith("[1/1] model.act=0 data=synthetic  ok  test_acc 0.5000")
    finally:
        progress.stop()


def test_a_run_whose_logger_failed_says_so_on_its_line(tmp_path: Path) -> None:
    out = Lines()
    progress = Progress(tmp_path, total=1, swept={"model.act"}, live=False, stream=out)  # type: ignore[arg-type]
    progress.start()
    write_record(tmp_path / "0", status="ok", test_acc=0.9, train_seconds=1.0, finished_at="now",
                 loggers_failed={"visdom": "ConnectionError: no visdom server"})  # fmt: skip
    progress.stop()
    assert out.text == "[1/1] model.act=0  ok  test_acc 0.9000  1.0 s  (logger visdom failed)\n"
