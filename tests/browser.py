"""Headless chromium driven over its DevTools protocol: open a page, let its scripts draw, run
a script in it (click what a user would click), then read its text and take a screenshot.

For pages whose state lives in the browser (MLflow's runs table keeps its expanded rows in
localStorage), where `chromium --screenshot` alone cannot get past the first view.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import chromium, free_port, wait_until


@dataclass
class Page:
    socket: Any
    ids: itertools.count[int]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def run(self, script: str) -> Any:
        """The script's value (an expression, evaluated in the page)."""
        answer = self.call("Runtime.evaluate", expression=script, returnByValue=True)
        return answer.get("result", {}).get("value")

    def text(self) -> str:
        return str(self.run("document.body.innerText"))

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def open_page(
    url: str, size: tuple[int, int] = (1600, 1000)
) -> tuple[subprocess.Popen[bytes], Page]:
    """Chromium with `url` open; stop it with close(proc)."""
    import websocket  # websocket-client: visdom's dependency, installed with it

    browser = chromium()
    assert browser, "Debian's chromium: bash .ci/install-chromium.sh"
    port = free_port()
    proc = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        + [f"--remote-debugging-port={port}", f"--window-size={size[0]},{size[1]}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def targets() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as answer:
            return [t for t in json.loads(answer.read()) if t["type"] == "page"]

    found = wait_until(targets, "chromium's DevTools", 30)
    page = Page(
        websocket.create_connection(found[0]["webSocketDebuggerUrl"], timeout=60),
        itertools.count(1),
    )
    page.call("Page.enable")
    page.call(
        "Emulation.setDeviceMetricsOverride",
        width=size[0],
        height=size[1],
        deviceScaleFactor=1,
        mobile=False,
    )
    page.call("Page.navigate", url=url)
    return proc, page


def wait_for_text(page: Page, *texts: str, timeout: float = 60) -> str:
    """The page's text once it holds every one of texts."""

    def holds() -> str | None:
        text = page.text()
        return text if all(x in text for x in texts) else None

    return str(wait_until(holds, f"{texts} on the page", timeout))


def close(proc: subprocess.Popen[bytes], page: Page) -> None:
    page.socket.close()
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
