"""Which requests the visdom server we start refuses: those a web page of another site sends
from the user's browser, and env ids that would name a file outside the env folder.

visdom's own server accepts a websocket from any Origin and any request whatever its Host, so
any page open in the user's browser could read every run and delete environments, directly or
through a name of its own that resolves to 127.0.0.1 (DNS rebinding). A browser always says
where a request comes from (Origin on every websocket handshake and every POST, Sec-Fetch-Site
on everything, Referer on old browsers); a non-browser client (visdom's Python client, what
logger=visdom uses) sends none of these and is not a web page's tool, so it is let through.

The rules, for every request, websocket handshakes included:
- Host must name this machine's loopback (127.0.0.1, localhost, ::1; any port, for an
  `ssh -L 9000:127.0.0.1:8097` tunnel) unless the server is public: a rebinding page's
  requests carry its own name.
- Origin, when sent, must be the server's own: http(s)://<the Host the request was sent to>.
- Without Origin, Sec-Fetch-Site from another site is refused except for a top-level
  navigation (a link to the page is fine; reading it from a script is not); without either,
  a Referer from another origin is refused on anything but GET and HEAD.

Env ids: visdom joins some of them to a path as they are (`delete_env` over the websocket,
`/env/<id>`, `/compare/<ids>`), so "../x" or "/x" would delete or read a `.json` file outside
the env folder. Such an id is refused wherever it appears; "a/b" stays inside the folder
(visdom writes it as "a_b") and is left alone.

Standard library only: visdom_server.py wires these into visdom's tornado handlers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
READING = frozenset({"GET", "HEAD"})


def _netloc(url: str) -> str | None:
    """The host:port of an http(s) URL, lowercased; None for anything else ("null", file:)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None


def _hostname(host: str) -> str | None:
    try:
        return urlsplit(f"//{host}").hostname
    except ValueError:
        return None


def refusal(method: str, headers: Mapping[str, str], public: bool) -> str | None:
    """Why a request is refused (one line), or None when it is let through."""
    host = headers.get("Host", "").lower()
    if host and not public and _hostname(host) not in LOOPBACK:
        return f"Host {host!r} is not this machine (127.0.0.1 or localhost)"
    origin = headers.get("Origin")
    if origin is not None:
        if _netloc(origin) != host:
            return f"Origin {origin!r} is not this server's page (http://{host})"
        return None
    site = headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        navigation = method in READING and headers.get("Sec-Fetch-Mode") == "navigate"
        return None if navigation else f"a request from another site (Sec-Fetch-Site: {site})"
    referer = headers.get("Referer")
    if not site and referer is not None and method not in READING and _netloc(referer) != host:
        return f"Referer {referer!r} is not this server's page (http://{host})"
    return None


def escapes(eid: object) -> bool:
    """Whether an env id, joined to the env folder as visdom joins it, names a file outside."""
    if not isinstance(eid, str):
        return False
    name = eid.strip()
    return name.startswith("/") or "\\" in name or "\0" in name or ".." in name.split("/")


def env_ids(payload: object, depth: int = 0) -> Iterator[object]:
    """The env ids a visdom message or request body names: its eid and prev_eid, those of its
    data (forward_to_vis), and those of a message it carries as JSON text (socket_wrap)."""
    if not isinstance(payload, dict) or depth > 2:
        return
    yield payload.get("eid")
    yield payload.get("prev_eid")
    yield from env_ids(payload.get("data"), depth + 1)
    message = payload.get("message")
    if isinstance(message, str | bytes):
        try:
            yield from env_ids(json.loads(message), depth + 1)
        except ValueError:
            pass


def escaping_env_id(payload: object) -> str | None:
    """The first env id in payload that would leave the env folder, or None."""
    return next((str(eid) for eid in env_ids(payload) if escapes(eid)), None)
