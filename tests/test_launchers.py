"""hydra/launcher=parallel and =fused pass Hydra's own launcher test suites, as its plugins do."""

from __future__ import annotations

import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

pytestmark = pytest.mark.filterwarnings("ignore:Future Hydra versions will no longer change")


@pytest.mark.usefixtures("hydra_defaults")
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [("parallel", ["hydra.launcher.n_jobs=2"]), ("fused", ["hydra.launcher.n_jobs=2"])],
)
class TestParallelLauncher(LauncherTestSuite):
    pass


@pytest.mark.usefixtures("hydra_defaults")
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("parallel", ["hydra.launcher.n_jobs=2", "hydra.sweeper.max_batch_size=2"]),
        ("fused", ["hydra.launcher.n_jobs=2", "hydra.sweeper.max_batch_size=2"]),
    ],
)
class TestParallelLauncherBatches(BatchedSweeperTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        ({"defaults": [{"override hydra/launcher": "parallel"}]}, ["-m"]),
        ({"defaults": [{"override hydra/launcher": "fused"}]}, ["-m"]),
    ],
)
class TestParallelLauncherIntegration(IntegrationTestSuite):
    pass
