"""mlp_sweep.sweep from a notebook, as a user runs one: a real Jupyter kernel (nbclient) runs a
small notebook that launches a sweep, reads its frame and makes a mistake; and a
sweep interrupted the way a notebook's interrupt button does it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason='the dev extra: pip install -e ".[dev]"')
nbclient = pytest.importorskip("nbclient", reason='the dev extra: pip install -e ".[dev]"')

SMALL = '"data=synthetic", "data.n_train=200", "data.n_test=100", "trainer.epochs=2"'
CELLS = [
    "import mlp_sweep",
    f'runs = mlp_sweep.sweep(["model.act=relu,selu", {SMALL}], sweep_dir="nb-sweep")',
    'print(runs[["job", "model.act", "status"]].to_json(orient="records"))',
    'try:\n    mlp_sweep.sweep(["model.act=nope"], sweep_dir="nb-bad")\n'
    "except mlp_sweep.SweepError as err:\n    print('mistake:', err)",
]  # resume=True: test_an_interrupted_sweep_stops_cleanly_and_resumes


def _outputs(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_a_notebook_runs_a_sweep_and_gets_its_frame(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    path = tmp_path / "sweep.ipynb"
    nbformat.write(notebook, path)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    cells = notebook.cells
    # The command's lines, echoed: a line per run as it finishes, counted in finishing order.
    # The two runs train side by side on two workers, so either may finish first.
    finished = re.findall(r"^\[(\d)/2\] model\.act=(\w+)  ok  ", _outputs(cells[1]), re.M)
    assert [n for n, _ in finished] == ["1", "2"]
    assert sorted(act for _, act in finished) == ["relu", "selu"]
    assert json.loads(_outputs(cells[2])) == [
        {"job": 0, "model.act": "relu", "status": "ok"},
        {"job": 1, "model.act": "selu", "status": "ok"},
    ]
    said = _outputs(cells[3]).splitlines()
    assert said[-1] == (
        "mistake: mlp_sweep: error: model.act: Invalid value 'nope', expected one of "
        "[relu, leaky, selu, softplus, tanh, sigmoid, elu, gelu, silu]"
    )
    assert not (tmp_path / "nb-bad").exists()  # nothing ran


def test_an_interrupted_sweep_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    """SIGINT to the calling process while the sweep trains (a notebook's interrupt button):
    KeyboardInterrupt reaches the caller after the command stopped its runs as Ctrl-C does,
    and resume=True finishes them."""
    script = tmp_path / "caller.py"
    # SIGINT raises KeyboardInterrupt in the caller, as in a kernel running a cell, even where
    # this test's process ignores it (a runner started in the background, `cmd &`): a process
    # starts with the ignored signals of its parent, and Python then leaves SIGINT ignored.
    script.write_text(
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import mlp_sweep\n"
        "try:\n"
        '    mlp_sweep.sweep(["model.act=relu,selu", "trainer.epochs=30", '
        '"data.limit_train=3000", "data.limit_test=1000"], sweep_dir="s")\n'
        "except KeyboardInterrupt:\n"
        "    print('caller: KeyboardInterrupt')\n"
    )
    caller = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(caller.stdout or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "s").glob("*/history.csv")):
        time.sleep(0.2)
    caller.send_signal(signal.SIGINT)
    assert caller.wait(120) == 0
    reader.join(10)
    said = "".join(lines)
    assert "caller: KeyboardInterrupt" in said
    statuses = [
        json.loads(p.read_text())["status"] for p in (tmp_path / "s").glob("*/metrics.json")
    ]
    assert "interrupted" in statuses

    import mlp_sweep

    # The resume continues both runs from their checkpoints, to their last epoch.
    done = mlp_sweep.sweep([], sweep_dir=tmp_path / "s", resume=True, echo=False)
    assert done["status"].tolist() == ["ok", "ok"]
    assert done["epochs_done"].tolist() == [30, 30]
