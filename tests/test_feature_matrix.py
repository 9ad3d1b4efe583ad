"""Every feature on every launcher: the same sweeps under hydra/launcher=basic, parallel and
fused (fuse=always) leave the same files, record keys, statuses and numbers (SLURM's row:
tests/test_slurm.py). See tests/feature_matrix.py for the sweeps and the checks.

A feature written for one launcher only (pruning or per-step logging for runs alone, say)
fails here on the others: the matrix compares each launcher's folders with the basic
launcher's, stage by stage.
"""

from __future__ import annotations

import pytest

from tests.feature_matrix import (
    LAUNCHERS,
    Matrix,
    basic_matrix,
    check_features,
    check_same,
    logger_args,
    matrix_loggers,
    run_matrix,
)

# With the viz and track extras the grid's runs log to tensorboard (events, steps.csv) and to
# MLflow (the sweep's local store); without them they log nothing, and every other feature is
# still compared.
LOGGERS = matrix_loggers()
LOGGER = logger_args(LOGGERS)


class Matrices:
    """Each launcher's matrix, run when a test first asks for it (so `-k fused` runs only the
    fused launcher's and the basic one's it is compared with)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.done: dict[str, Matrix] = {}

    def __getitem__(self, launcher: str) -> Matrix:
        if launcher not in self.done:
            if launcher == "basic":
                self.done[launcher] = basic_matrix(self.factory, LOGGER)
            else:
                where = self.factory.mktemp(launcher)
                self.done[launcher] = run_matrix(launcher, LAUNCHERS[launcher], where, LOGGER)
        return self.done[launcher]


@pytest.fixture(scope="module")
def matrices(tmp_path_factory: pytest.TempPathFactory) -> Matrices:
    return Matrices(tmp_path_factory)


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_each_feature_on_each_launcher(matrices: Matrices, launcher: str) -> None:
    check_features(matrices[launcher], LOGGERS)


@pytest.mark.parametrize("launcher", [name for name in LAUNCHERS if name != "basic"])
def test_every_launcher_leaves_what_the_basic_one_leaves(matrices: Matrices, launcher: str) -> None:
    check_same(matrices[launcher], matrices["basic"], exact=launcher != "fused")
