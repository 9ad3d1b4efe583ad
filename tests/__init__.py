"""mlp_sweep's tests: a package, so that pytest imports each file once, as tests.<name>
(conftest.py as tests.conftest), and shared helpers come from tests.helpers."""
