"""One line that says what to do: a logger whose library is missing names what to install,
and the summary command names itself as it is typed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlp_sweep.loggers import describe_failure
from mlp_sweep.results.publish import main as summary_main


@pytest.mark.parametrize(
    "module,needs",
    [
        ("tensorboard", 'it needs the viz extra: pip install ".[viz]"'),
        ("visdom", "it needs visdom: see docs/watching.md"),
    ],
)
def test_a_missing_logger_library_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, needs: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(ImportError) as caught:
        __import__(module)
    line = describe_failure(caught.value)
    assert line.startswith(f"{module} is not installed; {needs}"), line


def test_another_import_error_is_told_as_it_is() -> None:
    err = ImportError("cannot import name 'x' from 'y'", name="y")
    assert describe_failure(err) == "ImportError: cannot import name 'x' from 'y'"


def test_the_summary_command_names_itself_as_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert summary_main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("mlp_sweep.summary: error: ")
