"""`mlp_sweep.sweep([...])`: a sweep launched from Python (a notebook, a script), returned as
mlp_sweep.load's frame.

It runs the command itself, `python -m mlp_sweep -m <overrides>`, as a child process: the same
grammar, the same check of every job before any trains, the same launchers, and nothing of
Hydra's global state or signal handlers in the caller's process (a Jupyter kernel keeps its
own). The command's lines are echoed as they come. Its stdin is empty, so nothing ever waits
for input. Ctrl-C (a notebook's interrupt button) is passed on as the command's own Ctrl-C:
the runs record `interrupted`, what finished is summarized, and KeyboardInterrupt reaches the
caller once the command has stopped; `sweep(..., sweep_dir=that, resume=True)` continues it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mlp_sweep.errors import MlpSweepError
from mlp_sweep.labels import MULTIRUN_FILE, hydra_value

if TYPE_CHECKING:
    import pandas as pd

USAGE = 2  # the command's exit code for a mistake: one line, nothing trained


class SweepError(MlpSweepError):
    """The sweep did not run: the message is the command line's one line."""


def sweep(
    overrides: Sequence[str],
    sweep_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    echo: bool = True,
) -> pd.DataFrame:
    """Run `python -m mlp_sweep -m *overrides` and return its runs (mlp_sweep.load's frame).

    overrides: the command line's override strings, e.g. ["model.act=relu,selu",
    "trainer.epochs=3"]. sweep_dir: where the sweep goes (default: outputs/sweeps/<now>, as
    on the command line). resume=True continues the sweep in sweep_dir (python -m mlp_sweep
    --resume). A mistake raises SweepError with the command's one line; runs that failed do
    not raise: their rows say so.
    """
    from mlp_sweep.results.collect import load

    if isinstance(overrides, str | bytes):
        raise TypeError(f'overrides: a list of strings, e.g. ["{overrides!s}"], not a string')
    if resume:
        if sweep_dir is None:
            raise SweepError("resume=True continues a sweep: give its sweep_dir")
        argv = ["--resume", os.fspath(sweep_dir), *overrides]
        folder = Path(sweep_dir)
    else:
        when = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
        folder = Path(sweep_dir) if sweep_dir is not None else Path("outputs/sweeps") / when
        # Quoted for Hydra's grammar: a folder named "a,b" is one folder, not a sweep of two.
        argv = ["-m", *overrides, f"hydra.sweep.dir={hydra_value(str(folder))}"]
    code, lines = _run([sys.executable, "-m", "mlp_sweep", *argv], echo)
    if code == USAGE or not (folder / MULTIRUN_FILE).is_file():
        errors = [line for line in lines if line.startswith("mlp_sweep:")] or lines[-1:]
        raise SweepError((errors[-1] if errors else f"exit code {code}").strip())
    return load(folder)


def _run(command: list[str], echo: bool) -> tuple[int, list[str]]:
    """The command's exit code and lines, echoed as they come; Ctrl-C passed on."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group, signalled as a terminal would
    )
    assert process.stdout is not None
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if echo:
                print(line, end="", flush=True)

    try:
        read()
        return process.wait(), lines
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGINT)  # the command's own clean Ctrl-C
        read()
        process.wait()
        raise
