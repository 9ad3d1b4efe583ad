"""`python -m mlp_sweep.visdom_server`: a visdom server for logger=visdom, offline, that only
its user reaches.

visdom's own entry points (`visdom`, `python -m visdom.server`) first download the page's
scripts from CDNs and crash without internet; this starts the same server (visdom's tornado
Application) without that step, and with these differences:

- it listens on 127.0.0.1 only; from another machine, an ssh tunnel
  (`ssh -L 8097:127.0.0.1:8097 user@host`) reaches it as its user;
- every request passes visdom_guard's rules first: a web page of another site open in the
  browser can neither read the runs nor change them (Origin, Host, Sec-Fetch-Site), and an
  env id that would name a file outside the env folder is refused;
- `--public` listens on every interface and requires visdom's own login (VISDOM_USERNAME and
  VISDOM_PASSWORD, the names visdom reads); `--login` asks for it on 127.0.0.1 too;
- tornado's debug mode is off: it would restart the server whenever a source file of any
  module it imported changes.

The page itself (plotly, react, jquery, ...) is not in visdom's package: `--install-page`
(once, where the npm registry or a mirror of it is reachable) puts its 21 files into visdom's
static folder, each checked against a hash pinned in visdom_page.py. Without them the Python
client (what logger=visdom uses) still works, and the page stays blank.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlp_sweep.loggers.visdom_guard import escapes, escaping_env_id, refusal
from mlp_sweep.loggers.visdom_page import NPM, PAGE_FILES, PageError, install_page, page_problems

PROG = "mlp_sweep.visdom_server"
log = logging.getLogger(PROG)


def static_folder() -> Path:
    import visdom

    return Path(visdom.__file__).parent / "static"


def credential(environ: Mapping[str, str]) -> dict[str, str] | None:
    """visdom's login from VISDOM_USERNAME and VISDOM_PASSWORD (the password hashed as visdom
    stores it), or None when either is unset."""
    from visdom.utils.server_utils import hash_password

    username, password = environ.get("VISDOM_USERNAME"), environ.get("VISDOM_PASSWORD")
    if not (username and password):
        return None
    return {"username": username, "password": hash_password(hash_password(password))}


def _escaping_env_id(handler: Any) -> str | None:
    """An escaping env id in the request's path (/env/<id>, /compare/<id>+<id>) or JSON body,
    or None."""
    for arg in handler.path_args if handler.env_ids_in_path else ():
        for eid in str(arg).split("+"):
            if escapes(eid):
                return eid
    body = handler.request.body
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        return escaping_env_id(json.loads(body))
    except ValueError:
        return None  # visdom answers it as it would


def application_class() -> Any:
    """visdom's Application, every handler of it behind the guard (visdom_guard.py)."""
    from tornado.web import Application, RequestHandler
    from tornado.websocket import WebSocketHandler
    from visdom.server.app import Application as VisdomApplication

    class Guard(RequestHandler):
        env_ids_in_path = False

        def prepare(self) -> Any:
            public = getattr(self.application, "public", False)
            why = refusal(self.request.method or "", self.request.headers, public)
            if why is None and (eid := _escaping_env_id(self)) is not None:
                why = f"env id {eid!r} would name a file outside the env folder"
            if why is None:
                return super().prepare()
            log.warning("refused %s %s: %s", self.request.method, self.request.path, why)
            self.set_status(403)
            self.finish(f"refused: {why}\n")
            return None

    class SocketGuard(WebSocketHandler):
        def check_origin(self, origin: str) -> bool:  # visdom's returns True for any origin
            public = getattr(self.application, "public", False)
            return refusal("GET", self.request.headers, public) is None

        def on_message(self, message: str | bytes) -> Any:
            try:
                eid = escaping_env_id(json.loads(message))
            except ValueError:
                eid = None
            if eid is None:
                return super().on_message(message)
            log.warning("ignored a socket message: env id %r leaves the env folder", eid)
            return None

    def guarded(pattern: str, handler: type) -> type:
        bases = (Guard, SocketGuard) if issubclass(handler, WebSocketHandler) else (Guard,)
        in_path = pattern.endswith(("/env/(.*)", "/compare/(.*)"))
        return type(f"Guarded{handler.__name__}", (*bases, handler), {"env_ids_in_path": in_path})

    class Routes(Application):
        """Between visdom's Application and tornado's: visdom hands its handler list to
        tornado through here, which puts each handler behind the guard."""

        def __init__(self, handlers: list[Any], **settings: Any) -> None:
            handlers = [
                (rule[0], guarded(rule[0], rule[1]), *rule[2:])
                if isinstance(rule, tuple) and issubclass(rule[1], RequestHandler)
                else rule
                for rule in handlers
            ]
            super().__init__(handlers, **{**settings, "debug": False, "autoreload": False})

    class GuardedApplication(VisdomApplication, Routes):
        public = False

    return GuardedApplication


async def serve(
    port: int, env_path: Path, public: bool, login: dict[str, str] | None, cookie: str
) -> None:
    app = application_class()(port=port, env_path=f"{env_path}/")
    app.public = public
    if login is not None:
        # visdom's Application would read its secret from ~/.visdom/COOKIE_SECRET; set here
        # instead, so nothing is written outside the env folder (and logins last one start).
        app.user_credential, app.login_enabled = login, True
        app.settings["cookie_secret"] = cookie
    app.listen(port, address="" if public else "127.0.0.1", max_buffer_size=1024**3)
    if public:
        print(
            f"visdom server on every interface, port {port}, behind visdom's login as "
            f"{login and login['username']!r} (VISDOM_USERNAME); plain HTTP: a network you trust"
        )
    else:
        how = " with visdom's login" if login else ""
        print(
            f"visdom server on http://127.0.0.1:{port}{how}, this machine only; from another: "
            f"ssh -L {port}:127.0.0.1:{port} user@this-host"
        )
    sys.stdout.flush()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument(
        "--env-path",
        type=Path,
        default=Path("outputs/visdom"),
        help="where the server keeps its environments (default: outputs/visdom)",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="listen on every interface, behind visdom's login (VISDOM_USERNAME, "
        "VISDOM_PASSWORD); the default, 127.0.0.1, is reached from elsewhere by ssh -L",
    )
    parser.add_argument(
        "--login", action="store_true", help="visdom's login on 127.0.0.1 too (a shared machine)"
    )
    parser.add_argument(
        "--install-page",
        action="store_true",
        help="put the web page's scripts into visdom's static folder, from the npm registry, "
        "each checked against its pinned sha512, and exit",
    )
    parser.add_argument("--registry", default=NPM, help=f"the npm registry (default: {NPM})")
    args = parser.parse_args(argv)
    try:
        import visdom
    except ImportError:
        raise SystemExit(f"{PROG}: visdom is not installed; see docs/watching.md") from None
    if args.install_page:
        folder = static_folder()
        try:
            install_page(folder, str(getattr(visdom, "__version__", "")), args.registry)
        except (PageError, OSError) as err:
            raise SystemExit(f"{PROG}: cannot install the page: {err}") from None
        print(f"visdom's page: {len(PAGE_FILES)} files, each as pinned, in {folder}")
        return
    login = credential(os.environ) if args.public or args.login else None
    if (args.public or args.login) and login is None:
        flag = "--public" if args.public else "--login"
        raise SystemExit(
            f"{PROG}: {flag} needs visdom's login: set VISDOM_USERNAME and VISDOM_PASSWORD "
            f"(or watch through ssh -L {args.port}:127.0.0.1:{args.port}: docs/watching.md)"
        )
    missing = page_problems(static_folder())
    if missing:
        print(
            f"{PROG}: {len(missing)} of the web page's {len(PAGE_FILES)} scripts are missing or "
            f"not the pinned ones ({missing[0]}, ...), so the page may be blank (loggers still "
            f"work); install them once: python -m {PROG} --install-page",
            file=sys.stderr,
        )
    args.env_path.mkdir(parents=True, exist_ok=True)
    cookie = os.environ.get("VISDOM_COOKIE") or secrets.token_urlsafe(32)
    try:
        asyncio.run(serve(args.port, args.env_path, args.public, login, cookie))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
