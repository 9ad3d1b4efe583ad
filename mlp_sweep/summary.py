"""`python -m mlp_sweep.summary DIR...`: rebuild a sweep folder's summary.csv and plots.

The code lives in mlp_sweep.results; this module keeps the documented command.
"""

import sys

from mlp_sweep.results.publish import main

if __name__ == "__main__":
    sys.exit(main())
