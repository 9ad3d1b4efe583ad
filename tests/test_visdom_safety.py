"""The visdom server we start answers its own page and its Python clients only, and
`--install-page` writes nothing but the pinned files.

A real server (`python -m mlp_sweep.visdom_server`) on a free 127.0.0.1 port, asked as a web
page of another site would ask it (a foreign Origin, a rebinding Host), as its own page asks it
(headless chromium), and as visdom's Python client asks it. `--install-page` runs against a
registry served here on 127.0.0.1, with tarballs made here and pins to match them.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import logging
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlp_sweep.loggers import visdom_page, visdom_server
from mlp_sweep.loggers.visdom_guard import escaping_env_id, refusal
from mlp_sweep.loggers.visdom_page import PACKAGES, PAGE_FILES, PageFile, page_problems, sha512
from tests.helpers import (
    chromium,
    chromium_or_skip,
    cli_env,
    free_port,
    screenshot,
    stop,
    wait_until,
)

PUBLIC, LOCAL = True, False


def needs_visdom() -> Any:
    return pytest.importorskip("visdom", reason="needs visdom: see docs/watching.md")


# --- the rules, in-process -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "public", "refused"),
    [
        ("POST", {"Host": "127.0.0.1:8097"}, LOCAL, False),  # visdom's Python client
        ("GET", {"Host": "127.0.0.1:8097", "Origin": "http://127.0.0.1:8097"}, LOCAL, False),
        ("GET", {"Host": "localhost:8097", "Origin": "http://localhost:8097"}, LOCAL, False),
        ("GET", {"Host": "localhost:9000", "Origin": "http://localhost:9000"}, LOCAL, False),
        ("GET", {"Host": "127.0.0.1:8097", "Origin": "http://evil.example"}, LOCAL, True),
        ("GET", {"Host": "127.0.0.1:8097", "Origin": "http://localhost:3000"}, LOCAL, True),
        ("GET", {"Host": "127.0.0.1:8097", "Origin": "null"}, LOCAL, True),
        ("GET", {"Host": "evil.example:8097", "Origin": "http://evil.example:8097"}, LOCAL, True),
        ("GET", {"Host": "evil.example:8097", "Sec-Fetch-Site": "same-origin"}, LOCAL, True),
        ("GET", {"Host": "evil.example:8097", "Origin": "http://evil.example:8097"}, PUBLIC, False),
        ("GET", {"Host": "gpu1:8097", "Origin": "http://evil.example"}, PUBLIC, True),
        ("POST", {"Host": "127.0.0.1:8097", "Sec-Fetch-Site": "cross-site"}, LOCAL, True),
        ("GET", {"Host": "127.0.0.1:8097", "Sec-Fetch-Site": "same-site"}, LOCAL, True),
        (
            "GET",
            {
                "Host": "127.0.0.1:8097",
                "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "navigate",
            },
            LOCAL,
            False,  # a link to the page, opened in a tab: the user sees it, no other page does
        ),
        ("POST", {"Host": "127.0.0.1:8097", "Referer": "http://evil.example/x"}, LOCAL, True),
        ("POST", {"Host": "127.0.0.1:8097", "Referer": "http://127.0.0.1:8097/"}, LOCAL, False),
    ],
)
def test_which_requests_are_refused(
    method: str, headers: dict[str, str], public: bool, refused: bool
) -> None:
    assert (refusal(method, headers, public) is not None) == refused


@pytest.mark.parametrize(
    ("payload", "found"),
    [
        ({"cmd": "delete_env", "eid": "../decoy"}, "../decoy"),
        ({"cmd": "delete_env", "eid": "/etc/decoy"}, "/etc/decoy"),
        ({"cmd": "delete_env", "eid": " ../decoy"}, " ../decoy"),  # visdom strips it
        ({"cmd": "save", "eid": "x", "prev_eid": "a/../../b"}, "a/../../b"),
        ({"cmd": "forward_to_vis", "data": {"eid": "..\\x"}}, "..\\x"),
        ({"message_type": "send", "message": '{"cmd": "delete_env", "eid": ".."}'}, ".."),
        ({"cmd": "delete_env", "eid": "mlp_sweep_2026-11-27_16-05-08"}, None),
        ({"eid": "project/run"}, None),  # visdom writes it as project_run
        ({"eid": "a..b"}, None),
        ({"data": [{"x": [1], "y": [2]}], "eid": None}, None),
    ],
)
def test_env_ids_that_leave_the_env_folder(payload: dict[str, Any], found: str | None) -> None:
    assert escaping_env_id(payload) == found


# --- a real server ---------------------------------------------------------------------------


def start_server(
    env_path: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Our launcher on a free port; its stderr in a file beside env_path."""
    port = free_port()
    log = env_path.parent / f"server-{port}.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlp_sweep.visdom_server", "--port", str(port)]
            + ["--env-path", str(env_path), *flags],
            env=env or cli_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    # Any answer will do: behind a login, pages answer 400 until one logs in.
    wait_until(lambda: proc.poll() is None and answer(port, "/")[0] > 0, "the server")
    return proc, port, log


def answer(
    port: int, path: str, body: dict[str, Any] | None = None, **headers: str
) -> tuple[int, str]:
    """(status, body) of a request to the server, a POST when there is a body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def client(port: int, **login: str) -> Any:
    visdom = needs_visdom()
    logging.getLogger("visdom").setLevel(logging.CRITICAL)
    return visdom.Visdom(
        server="http://127.0.0.1",
        port=port,
        use_incoming_socket=False,
        raise_exceptions=False,
        **login,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """(port, env folder, the server's stderr) of one server that the tests of this file share."""
    needs_visdom()
    env_path = tmp_path_factory.mktemp("visdom") / "envs"
    proc, port, log = start_server(env_path)
    try:
        yield port, env_path, log
    finally:
        stop(proc)


def saved_env(port: int, env_path: Path, name: str) -> Path:
    """An env with one window, saved to its file in the env folder."""
    vis = client(port)
    vis.text("kept", win="note", env=name)
    vis.save([name])
    path = env_path / f"{name}.json"
    wait_until(path.is_file, f"{path}")
    return path


def socket(port: int, origin: str, host: str | None = None) -> Any:
    websocket = pytest.importorskip("websocket", reason="websocket-client comes with visdom")
    return websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket", origin=origin, host=host, timeout=10
    )


def test_a_websocket_from_another_origin_is_refused(server: tuple[int, Path, Path]) -> None:
    port, _, _ = server
    websocket = pytest.importorskip("websocket", reason="websocket-client comes with visdom")
    for origin, host in [
        ("http://evil.example", None),
        (f"http://localhost:{port + 1}", None),  # another server on this machine
        (f"http://evil.example:{port}", f"evil.example:{port}"),  # a rebinding page
    ]:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            socket(port, origin, host)
        assert refused.value.status_code == 403, origin
    for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        host = None if "127.0.0.1" in own else f"localhost:{port}"
        ws = socket(port, own, host)
        try:  # visdom's greeting to its page: every env, readable
            assert json.loads(ws.recv())["command"] == "register"
        finally:
            ws.close()


def test_a_page_of_another_origin_can_neither_delete_nor_read(
    server: tuple[int, Path, Path],
) -> None:
    port, env_path, _ = server
    victim = saved_env(port, env_path, "victim")
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    for path, body in [
        ("/delete_env", {"eid": "victim"}),
        ("/env/victim", {"eid": "victim"}),
        ("/win_data", {"eid": "victim", "win": None}),
        ("/socket_wrap", {"message_type": "send", "sid": "x", "message": "{}"}),
    ]:
        status, text = answer(port, path, body, **evil)
        assert status == 403 and "evil.example" in text, path
    status, _ = answer(port, "/delete_env", {"eid": "victim"}, **{"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert victim.is_file() and "victim" in client(port).get_env_list()
    # The same request from the server's own page goes through: the refusal above was the
    # Origin's doing.
    status, _ = answer(port, "/delete_env", {"eid": "victim"}, Origin=f"http://127.0.0.1:{port}")
    assert status == 200 and not victim.exists()


def test_env_ids_that_leave_the_env_folder_are_refused(server: tuple[int, Path, Path]) -> None:
    port, env_path, log = server
    decoy = env_path.parent / "decoy.json"  # what "../decoy" names
    decoy.write_text("{}")
    own = {"Origin": f"http://127.0.0.1:{port}"}
    for path, body in [
        ("/env/x", {"eid": "../decoy"}),  # would put it in the state, for a delete_env
        ("/env/..%2Fdecoy", {"sid": "x"}),  # would read <folder>/../decoy/.json
        ("/compare/main+..%2F..%2Fetc", {"sid": "x"}),
    ]:
        status, text = answer(port, path, body, **own)
        assert status == 403 and "outside the env folder" in text, path
    # Over the page's own socket: the bad message is dropped, the next one (a real delete)
    # still goes through, so the socket stays the page's.
    kept = saved_env(port, env_path, "kept")
    ws = socket(port, own["Origin"])
    try:
        ws.send(json.dumps({"cmd": "delete_env", "eid": "../decoy"}))
        ws.send(json.dumps({"cmd": "delete_env", "eid": "kept"}))
        wait_until(lambda: not kept.exists(), "the page's delete_env", timeout=20)
    finally:
        ws.close()
    assert decoy.read_text() == "{}"
    assert "ignored a socket message: env id '../decoy'" in log.read_text()


def test_the_page_still_works_in_chromium(server: tuple[int, Path, Path], tmp_path: Path) -> None:
    """The page's scripts read the env through its websocket: the window's title is in the
    page only if that socket was accepted (a refused socket leaves the page without it)."""
    port, _, _ = server
    chromium_or_skip()
    title = "drawn-through-the-guarded-socket"
    client(port).line(X=[1, 2, 3], Y=[3, 1, 2], win="curve", env="shown", opts={"title": title})
    url = f"http://127.0.0.1:{port}/env/shown"
    browser = chromium()
    assert browser
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
        + ["--virtual-time-budget=10000", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert title in dom
    screenshot(url, tmp_path / "page.png")  # and drawn, not blank


def test_public_needs_a_login(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_visdom()
    for name in ("VISDOM_USERNAME", "VISDOM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as refused:
        visdom_server.main(["--public", "--port", "8097"])
    line = str(refused.value.code)
    assert "\n" not in line
    assert "--public needs visdom's login: set VISDOM_USERNAME and VISDOM_PASSWORD" in line
    assert "ssh -L 8097:127.0.0.1:8097" in line


def test_public_asks_for_visdoms_login(tmp_path: Path) -> None:
    needs_visdom()
    login = {"VISDOM_USERNAME": "ada", "VISDOM_PASSWORD": "s3cret"}
    proc, port, _ = start_server(tmp_path / "envs", "--public", env={**cli_env(), **login})
    try:
        assert proc.stdout is not None
        said = proc.stdout.readline().decode()
        assert said.startswith(f"visdom server on every interface, port {port}, behind")
        assert "'ada'" in said
        assert client(port).text("no login", env="locked") == ""  # refused: no window id
        assert "locked" not in client(port, username="ada", password="s3cret").get_env_list()
        assert client(port, username="ada", password="s3cret").text("in", env="open")
        status, page = answer(port, "/")
        assert status == 200 and 'id="inputPassword"' in page  # the page asks for the login
    finally:
        stop(proc)


# --- --install-page, against a registry served here ----------------------------------------


def tarball(files: dict[str, bytes]) -> bytes:
    """An npm tarball of files, the same bytes each time (gzip's own mtime set to 0)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue(), mtime=0)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL, folder) of an npm-like registry on 127.0.0.1 serving folder's files."""
    folder = tmp_path / "registry"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()


# Two packages of the page, made here: "a" with one file, "b" with two.
FAKE = {
    "a@1.0.0": {"a.min.js": b"window.a = 1;\n"},
    "b@2.0.0": {"dist/b.css": b"body { margin: 0 }\n", "dist/b.js": b"window.b = 2;\n"},
}
TARGETS = {"a.min.js": "js/a.min.js", "dist/b.css": "css/b.css", "dist/b.js": "js/b.js"}


def publish(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    tamper: str | None = None,
    pin_tamper: bool = False,
) -> None:
    """FAKE's tarballs into the registry folder and pins to match them into visdom_page;
    `tamper` (a file of FAKE) is served with one byte changed, its tarball's pin the
    untampered one's unless pin_tamper."""
    packages, files = {}, []
    for package, contents in FAKE.items():
        name, _, version = package.partition("@")
        served = {m: (d + b" " if m == tamper else d) for m, d in contents.items()}
        data = tarball(served)
        (folder / name / "-").mkdir(parents=True)
        (folder / name / "-" / f"{name}-{version}.tgz").write_bytes(data)
        packages[package] = sha512(data if pin_tamper else tarball(contents))
        files += [PageFile(package, m, TARGETS[m], sha512(d)) for m, d in contents.items()]
    monkeypatch.setattr(visdom_page, "PACKAGES", packages)
    monkeypatch.setattr(visdom_page, "PAGE_FILES", tuple(files))
    monkeypatch.setattr(visdom_server, "PAGE_FILES", tuple(files))


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def static(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for visdom's static folder, holding what visdom ships (index.html, its
    bundle) and an older copy of one of the page's files."""
    needs_visdom()
    folder = tmp_path / "static"
    (folder / "js").mkdir(parents=True)
    (folder / "index.html").write_text("<html></html>")
    (folder / "js" / "main.js").write_text("visdom's own bundle")
    (folder / "js" / "b.js").write_text("an older b")
    monkeypatch.setattr(visdom_server, "static_folder", lambda: folder)
    return folder


def install(url: str) -> None:
    visdom_server.main(["--install-page", "--registry", url])


def test_install_page_writes_the_pinned_files(
    registry: tuple[str, Path],
    static: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, folder = registry
    publish(folder, monkeypatch)
    install(url)
    assert (static / "js" / "b.js").read_bytes() == FAKE["b@2.0.0"]["dist/b.js"]
    assert (static / "css" / "b.css").read_bytes() == FAKE["b@2.0.0"]["dist/b.css"]
    assert (static / "version.built").is_file()
    assert page_problems(static) == []
    assert capsys.readouterr().out.startswith("visdom's page: 3 files, each as pinned, in ")
    assert not [p for p in static.rglob("*") if p.name.endswith(".tmp")]
    (static / "css" / "b.css").write_bytes(b"body { margin: 1px }\n")  # changed since
    assert page_problems(static) == ["css/b.css"]


@pytest.mark.parametrize("pin_tamper", [False, True], ids=["tarball", "file"])
def test_install_page_with_a_tampered_file_writes_nothing(
    registry: tuple[str, Path], static: Path, monkeypatch: pytest.MonkeyPatch, pin_tamper: bool
) -> None:
    """A file of "b" changed by one byte: its tarball is not npm's (caught before the archive
    is opened); or, were the tarball's pin the tampered one's, the file is not its pin."""
    url, folder = registry
    publish(folder, monkeypatch, tamper="dist/b.js", pin_tamper=pin_tamper)
    before = tree(static)
    with pytest.raises(SystemExit) as refused:
        install(url)
    line = str(refused.value.code)
    assert "\n" not in line and line.startswith("mlp_sweep.visdom_server: cannot install the page")
    assert "js/b.js" in line and "nothing was written" in line
    if not pin_tamper:
        assert f"{url}/b/-/b-2.0.0.tgz is not the tarball npm published for b@2.0.0" in line
    assert tree(static) == before  # "a", fetched and good, was not written either


def test_the_pins_hold_together() -> None:
    assert len(PAGE_FILES) == 21
    assert len({f.target for f in PAGE_FILES}) == 21
    assert {f.package for f in PAGE_FILES} == set(PACKAGES)
    for pin in [*PACKAGES.values(), *(f.sha512 for f in PAGE_FILES)]:
        assert pin.startswith("sha512-") and len(pin) == 95


def test_the_page_installed_here_is_the_pinned_one() -> None:
    """Where `--install-page` ran (.ci/run runs it), every file of the page is as pinned."""
    needs_visdom()
    folder = visdom_server.static_folder()
    problems = page_problems(folder)
    if len(problems) == len(PAGE_FILES):
        pytest.skip(
            "visdom's page is not installed: python -m mlp_sweep.visdom_server --install-page"
        )
    assert problems == []
