"""`python -m mlp_sweep.visdom_server`: a visdom server for logger=visdom, offline.

visdom's own entry points (`visdom`, `python -m visdom.server`) first download the page's
scripts from CDNs and crash without internet; this starts the same server without that step.

The page itself (plotly, react, jquery, bootstrap, d3, ...) is not in visdom's package. Every
one of those files is also a file of a package on the npm registry: `python -m
mlp_sweep.visdom_server --install-page` (once, after installing visdom, where the npm registry
is reachable) puts them into visdom's static folder, under the names visdom's page asks for,
and marks the folder built; from then on the page works with no network at all. Without it,
the Python client (what logger=visdom uses) still works, and the page stays blank.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

NPM = "https://registry.npmjs.org"
# (npm package, version, file in its tarball, where visdom's page looks for it under static/):
# the versions visdom 0.2.4's build.py downloads from CDNs.
PAGE_FILES = (
    ("jquery", "3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    ("bootstrap", "3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    ("bootstrap", "3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    *(
        (
            "bootstrap",
            "3.3.7",
            f"dist/fonts/glyphicons-halflings-regular.{ext}",
            f"fonts/glyphicons-halflings-regular.{ext}",
        )
        for ext in ("eot", "woff2", "woff", "ttf", "svg")
    ),  # fmt: skip
    ("react", "16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    ("react-dom", "16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    ("react-modal", "3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    ("plotly.js-dist-min", "2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    ("sjcl", "1.0.7", "sjcl.js", "js/sjcl.js"),
    ("layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    ("layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    ("d3", "3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    ("d3-selection-multi", "1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    ("save-svg-as-png", "1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    ("react-resizable", "1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
    ("react-grid-layout", "0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    ("classnames", "2.2.5", "index.js", "fonts/classnames"),
)


def static_folder() -> Path:
    import visdom

    return Path(visdom.__file__).parent / "static"


def page_installed() -> bool:
    """Whether visdom's static folder holds every file its page loads."""
    folder = static_folder()
    return all((folder / target).is_file() for *_, target in PAGE_FILES)


def install_page(registry: str = NPM) -> Path:
    """Every file of visdom's page from the npm registry into visdom's static folder (each
    package fetched once, each file written whole); returns the folder."""
    import visdom

    folder = static_folder()
    packages: dict[tuple[str, str], tarfile.TarFile] = {}
    for name, version, member, target in PAGE_FILES:
        if (name, version) not in packages:
            url = f"{registry}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
            with urllib.request.urlopen(url, timeout=60) as answer:
                data = answer.read()
            packages[name, version] = tarfile.open(fileobj=io.BytesIO(data))
        extracted = packages[name, version].extractfile(f"package/{member}")
        if extracted is None:
            raise OSError(f"{name}@{version} has no file {member}")
        path = folder / target
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(extracted.read())
        temporary.replace(path)
    # visdom's own build step checks this file before it downloads anything.
    (folder / "version.built").write_text(str(getattr(visdom, "__version__", "")))
    return folder


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
    parser.add_argument(
        "--install-page",
        action="store_true",
        help="put the web page's scripts into visdom's static folder, from the npm registry, "
        "and exit",
    )
    args = parser.parse_args(argv)
    try:
        from visdom.server import run_server
    except ImportError:
        raise SystemExit(
            "mlp_sweep.loggers.visdom_server: visdom is not installed; see docs/watching.md"
        ) from None
    if args.install_page:
        try:
            folder = install_page()
        except OSError as err:
            raise SystemExit(f"mlp_sweep.visdom_server: cannot install the page: {err}") from None
        print(f"visdom's page: {len(PAGE_FILES)} files in {folder}")
        return
    if not page_installed():
        print(
            "mlp_sweep.visdom_server: the web page's scripts are missing, so the page will be "
            "blank (loggers still work); install them once: python -m mlp_sweep.visdom_server "
            "--install-page",
            file=sys.stderr,
        )
    args.env_path.mkdir(parents=True, exist_ok=True)
    sys.argv = ["visdom", "-port", str(args.port), "-env_path", f"{args.env_path}/"]
    if not args.public:
        sys.argv.append("-bind_local")
    run_server.main()


if __name__ == "__main__":
    main()
