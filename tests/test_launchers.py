"""hydra/launcher=parallel and =fused pass Hydra's own launcher test suites, as its plugins do.

The fused launcher sends any task but mlp_sweep's own down the parallel launcher's path, so on
Hydra's test apps its suites repeat the parallel ones: they run with `-m slow`. What is fused's
own (stacks of mlp_sweep runs) is tests/test_fused.py's and tests/test_lifecycle.py's to check.
"""

from __future__ import annotations

import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

pytestmark = pytest.mark.filterwarnings("ignore:Future Hydra versions will no longer change")

# Marks the fused rows: the parallel rows of the same suite check the path they take.
FUSED_IS_PARALLEL_HERE = pytest.mark.slow(
    reason="fused runs Hydra's test apps down the parallel path: the parallel rows check it"
)


@pytest.mark.usefixtures("hydra_defaults")
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("parallel", ["hydra.launcher.n_jobs=2"]),
        pytest.param("fused", ["hydra.launcher.n_jobs=2"], marks=FUSED_IS_PARALLEL_HERE),
    ],
)
class TestParallelLauncher(LauncherTestSuite):
    pass


@pytest.mark.usefixtures("hydra_defaults")
@pytest.mark.parametrize(
    "launcher_name, overrides",
    [
        ("parallel", ["hydra.launcher.n_jobs=2", "hydra.sweeper.max_batch_size=2"]),
        pytest.param(
            "fused",
            ["hydra.launcher.n_jobs=2", "hydra.sweeper.max_batch_size=2"],
            marks=FUSED_IS_PARALLEL_HERE,
        ),
    ],
)
class TestParallelLauncherBatches(BatchedSweeperTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        ({"defaults": [{"override hydra/launcher": "parallel"}]}, ["-m"]),
        pytest.param(
            {"defaults": [{"override hydra/launcher": "fused"}]},
            ["-m"],
            marks=FUSED_IS_PARALLEL_HERE,
        ),
    ],
)
class TestParallelLauncherIntegration(IntegrationTestSuite):
    pass
