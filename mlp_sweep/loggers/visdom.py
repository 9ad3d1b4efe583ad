"""logger=visdom: the tutorial's live view, for a whole sweep at once.

One visdom environment per sweep (named by the sweep's folder, or `logger.visdom.env`), with
the tutorial's four windows: the train loss per step (the mean over every
logger.every_n_steps optimizer steps), and per epoch the train loss, test loss and test
accuracy, one line per run named by its job number and overrides; and for each run a window of
test digits under their true and predicted labels (misclassified first), redrawn each epoch.
Runs of a sweep write to the same line windows from wherever they train; the server serializes
the writes, and writing to a window that does not exist yet creates it.

The step line's new points go out together at most once a second (mlp_sweep.loggers
batches them), appended to the run's trace; the first epoch's end sends the whole line once
more. A window's existence is asked of the server only until the logger has drawn in it.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, cast

from mlp_sweep.config import VisdomConfig
from mlp_sweep.loggers.run_info import RunInfo
from mlp_sweep.training.loop import EpochStats

if TYPE_CHECKING:
    from visdom import Visdom

    from mlp_sweep.training.predict import Digits

# window id: (metric, title, y label)
WINDOWS = (
    ("train_loss", "train loss", "mean loss per sample"),
    ("test_loss", "test loss", "mean loss per sample"),
    ("test_acc", "test accuracy", "fraction correct"),
)
STEP_WINDOW = "train_loss_step"


def digits_window(run: RunInfo) -> str:
    """The run's own window of test digits: `digits_3_model_act_selu`."""
    return "digits_" + re.sub(r"\W+", "_", run.label).strip("_")


def env_name(run: RunInfo, cfg: VisdomConfig) -> str:
    return cfg.env or f"mlp_sweep_{run.group}"


def _environment_proxies(url: str) -> dict[str, str] | None:
    """The proxies HTTP_PROXY, HTTPS_PROXY and NO_PROXY name for url, as requests reads them."""
    from requests.utils import get_environ_proxies

    return dict(get_environ_proxies(url)) or None


def _environment_ca_bundle() -> str | None:
    """The CA bundle requests would take from the environment."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


class VisdomLogger:
    name = "visdom"

    def __init__(self, cfg: VisdomConfig) -> None:
        self.cfg = cfg
        self.finish_seconds = cfg.flush_timeout
        self.vis: Visdom | None = None
        self.env = ""
        self.label = ""
        self.digits_win = ""
        self.sent: list[EpochStats] = []
        self.step_points: list[tuple[int, float]] = []
        self.steps_sent = 0  # how many of step_points the server has
        self.repaired = False  # the step line sent whole once since its first points
        self.seen: set[str] = set()  # windows known to exist: no need to ask the server

    def prepare(self) -> None:
        import visdom  # noqa: F401

        from mlp_sweep.loggers.digits import prepare

        prepare()

    def start(
        self, run: RunInfo, history: list[EpochStats], steps: list[tuple[int, float]]
    ) -> None:
        import visdom

        # Without a socket back from the server (we send, never listen) the client warns on
        # every start; that is by design here.
        logging.getLogger("visdom").setLevel(logging.ERROR)
        self.env, self.label = env_name(run, self.cfg), run.label
        self.digits_win = digits_window(run)
        where = f"{self.cfg.server}:{self.cfg.port}"
        client: Any = visdom.Visdom  # its stub (__init__.pyi) lacks proxies= and .session
        try:
            self.vis = client(
                server=self.cfg.server,
                port=self.cfg.port,
                env=self.env,
                use_incoming_socket=False,
                raise_exceptions=True,
                proxies=_environment_proxies(where),
                # A server started with --login or --public asks for visdom's own login.
                username=os.environ.get("VISDOM_USERNAME") or None,
                password=os.environ.get("VISDOM_PASSWORD") or None,
            )
        except ConnectionError:
            raise ConnectionError(f"no visdom server answers at {where}") from None
        # The environment's proxies and CA bundle were read once above; requests would read
        # the whole environment again for every request, under the interpreter's lock.
        session = cast(Any, self.vis).session
        session.trust_env = False
        session.verify = _environment_ca_bundle() or True
        self.sent = list(history)
        self.step_points = list(steps)
        if history:  # a resumed run: its lines start over from the restored epochs and steps
            for win, title, ylabel in WINDOWS:
                self._send(win, title, ylabel, history, replace=True)
            self._send_steps(whole=True)

    def _exists(self, win: str) -> bool:
        """Whether the window exists: asked of the server until this logger has drawn in it."""
        assert self.vis is not None
        if win not in self.seen and self.vis.win_exists(win, env=self.env):
            self.seen.add(win)
        return win in self.seen

    def _send(
        self, win: str, title: str, ylabel: str, epochs: list[EpochStats], replace: bool = False
    ) -> None:
        assert self.vis is not None
        update = "replace" if replace and self._exists(win) else "append"
        self.vis.line(
            X=[e.epoch for e in epochs],
            Y=[getattr(e, win) for e in epochs],
            win=win,
            env=self.env,
            name=self.label,
            update=update,
            opts={"title": title, "xlabel": "epoch", "ylabel": ylabel, "showlegend": True},
        )
        self.seen.add(win)

    def _send_steps(self, whole: bool = False) -> None:
        """The step line: the points the server lacks, appended to this run's trace; or the
        whole line, replacing the trace (the first send, and once at the first epoch's end: see
        epoch())."""
        assert self.vis is not None
        points = self.step_points
        new = points if whole or not self.steps_sent else points[self.steps_sent :]
        if not new:
            return
        update = "append"
        if (whole or not self.steps_sent) and self._exists(STEP_WINDOW):
            update = "replace"
        self.vis.line(
            X=[step for step, _ in new],
            Y=[loss for _, loss in new],
            win=STEP_WINDOW,
            env=self.env,
            name=self.label,
            update=update,
            opts={
                "title": "train loss per step",
                "xlabel": "optimizer step",
                "ylabel": "mean loss per sample",
                "showlegend": True,
            },
        )
        self.seen.add(STEP_WINDOW)
        self.steps_sent = len(points)

    def steps(self, points: list[tuple[int, float]]) -> None:
        self.step_points += points
        self._send_steps()

    def digits(self, epoch: int, digits: Digits) -> None:
        from mlp_sweep.loggers.digits import grid

        assert self.vis is not None
        picture = grid(digits)
        self.vis.image(
            picture.transpose(2, 0, 1),  # visdom takes channels first
            win=self.digits_win,
            env=self.env,
            opts={
                "title": f"{self.label}, epoch {epoch}: {digits.errors} of {digits.seen} wrong",
                "width": picture.shape[1] + 40,
                "height": picture.shape[0] + 60,
                "store_history": False,
            },
        )

    def epoch(self, stats: EpochStats) -> None:
        # The whole line each time, replacing this run's trace: two runs that both find a
        # window missing both create it, and visdom keeps only the second one's points. The
        # next epoch's send restores the first run's line, not just its newest point.
        self.sent.append(stats)
        for win, title, ylabel in WINDOWS:
            self._send(win, title, ylabel, self.sent, replace=True)
        # The epoch's own steps came just before, through steps() (LoggerSet sends them
        # first). Once, the whole step line: points another run's creation of it lost.
        if not self.repaired:
            self._send_steps(whole=True)
            self.repaired = True

    def finish(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self.vis is not None:
            self.vis.save([self.env])  # the server keeps the env across its restarts
