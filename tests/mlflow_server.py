"""A real MLflow tracking server for the tests, and what they read back from it over its REST
API (the calls MLflow's own UI makes), never through mlp_sweep's code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, http_json, stop, wait_until


def mlflow_command() -> str:
    """The full mlflow's command (the track-server extra), or skip saying what to install."""
    pytest.importorskip("mlflow", reason='needs the track extra: pip install ".[track]"')
    pytest.importorskip("flask", reason='needs MLflow\'s server: pip install ".[track-server]"')
    command = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which(
        "mlflow"
    )
    if command is None:
        pytest.skip('needs MLflow\'s server: pip install ".[track-server]"')
    return command


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, endpoint: str, body: dict[str, Any] | None = None, **query: Any) -> Any:
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return http_json(url, body)

    def experiment_id(self, name: str) -> str:
        found = self.api("experiments/get-by-name", experiment_name=name)
        return str(found["experiment"]["experiment_id"])

    def runs(self, experiment: str) -> list[dict[str, Any]]:
        """Every run of the experiment, each as {"id", "name", "status", "tags", "params",
        "metrics"} with tags and params as dicts."""
        body: dict[str, Any] = {"experiment_ids": [experiment], "max_results": 1000}
        runs = []
        while True:
            page = self.api("runs/search", body)
            runs += page.get("runs", [])
            if not page.get("next_page_token"):
                break
            body["page_token"] = page["next_page_token"]
        return [
            {
                "id": run["info"]["run_id"],
                "name": run["info"].get("run_name"),
                "status": run["info"]["status"],
                "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])},
                "params": {p["key"]: p["value"] for p in run["data"].get("params", [])},
                "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])},
            }
            for run in runs
        ]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """The metric's every point, (step, value), in step order."""
        points, token = [], None
        while True:
            query = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                query["page_token"] = token
            page = self.api("metrics/get-history", **query)
            points += [(int(m["step"]), float(m["value"])) for m in page.get("metrics", [])]
            token = page.get("next_page_token")
            if not token:
                return sorted(points)

    def artifacts(self, run_id: str, path: str = "") -> set[str]:
        listed = self.api("artifacts/list", run_id=run_id, path=path).get("files", [])
        return {f["path"] for f in listed}


def start_server(root: Path, artifacts: Path | None = None) -> Server:
    """`mlflow server` on 127.0.0.1 with its store in root; stop it with stop_server."""
    command = mlflow_command()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # The server's background job runner (huey consumers) is for features these tests do not
    # use; without it the server starts in half the time and memory.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [command, "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
        + ["--artifacts-destination", str(artifacts or root / "artifacts")]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "wb"),  # noqa: SIM115  # closed with the process
        start_new_session=True,
    )
    server = Server(proc, port, root)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((root / "server.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_until(up, "the MLflow server", 90)
    except BaseException:
        stop(proc)  # a server that never came up is stopped all the same
        raise
    return server


def stop_server(server: Server) -> None:
    stop(server.proc)
