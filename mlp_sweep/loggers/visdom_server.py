"""`python -m mlp_sweep.visdom_server`: a visdom server for logger=visdom, offline.

visdom's own entry points (`visdom`, `python -m visdom.server`) first download the page's
scripts from CDNs and crash without internet; this starts the same server without that step.
The Python client (what logger=visdom uses) works either way; the web page needs the scripts,
which `python -m visdom.server` fetches once where there is internet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlp_sweep.visdom_server", description=__doc__)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument(
        "--env-path",
        type=Path,
        default=Path("outputs/visdom"),
        help="where the server keeps its environments (default: outputs/visdom)",
    )
    parser.add_argument(
        "--public", action="store_true", help="listen on every interface, not only 127.0.0.1"
    )
    args = parser.parse_args(argv)
    try:
        from visdom.server import run_server
    except ImportError:
        raise SystemExit(
            "mlp_sweep.loggers.visdom_server: visdom is not installed; see docs/watching.md"
        ) from None
    args.env_path.mkdir(parents=True, exist_ok=True)
    sys.argv = ["visdom", "-port", str(args.port), "-env_path", f"{args.env_path}/"]
    if not args.public:
        sys.argv.append("-bind_local")
    run_server.main()


if __name__ == "__main__":
    main()
