"""logger=visdom: the tutorial's live view, for a whole sweep at once.

One visdom environment per sweep (named by the sweep's folder, or `logger.visdom.env`), one
window per metric (train loss, test loss, test accuracy, each per epoch), one line per run,
named by its job number and overrides. Runs of a sweep append to the same windows from
wherever they train; the server serializes the appends, and appending to a window that does
not exist yet creates it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlp_sweep.config import VisdomConfig
from mlp_sweep.loggers.run_info import RunInfo
from mlp_sweep.training.loop import EpochStats

if TYPE_CHECKING:
    from visdom import Visdom

# window id: (metric, title, y label)
WINDOWS = (
    ("train_loss", "train loss", "mean loss per sample"),
    ("test_loss", "test loss", "mean loss per sample"),
    ("test_acc", "test accuracy", "fraction correct"),
)


def env_name(run: RunInfo, cfg: VisdomConfig) -> str:
    return cfg.env or f"mlp_sweep_{run.group}"


class VisdomLogger:
    name = "visdom"

    def __init__(self, cfg: VisdomConfig) -> None:
        self.cfg = cfg
        self.vis: Visdom | None = None
        self.env = ""
        self.label = ""
        self.sent: list[EpochStats] = []

    def start(self, run: RunInfo, history: list[EpochStats]) -> None:
        import visdom

        # Without a socket back from the server (we send, never listen) the client warns on
        # every start; that is by design here.
        logging.getLogger("visdom").setLevel(logging.ERROR)
        self.env, self.label = env_name(run, self.cfg), run.label
        where = f"{self.cfg.server}:{self.cfg.port}"
        try:
            self.vis = visdom.Visdom(
                server=self.cfg.server,
                port=self.cfg.port,
                env=self.env,
                use_incoming_socket=False,
                raise_exceptions=True,
            )
        except ConnectionError:
            raise ConnectionError(f"no visdom server answers at {where}") from None
        self.sent = list(history)
        if history:  # a resumed run: its line starts over from the restored epochs
            for win, title, ylabel in WINDOWS:
                self._send(win, title, ylabel, history, replace=True)

    def _send(
        self, win: str, title: str, ylabel: str, epochs: list[EpochStats], replace: bool = False
    ) -> None:
        assert self.vis is not None
        update = "replace" if replace and self.vis.win_exists(win, env=self.env) else "append"
        self.vis.line(
            X=[e.epoch for e in epochs],
            Y=[getattr(e, win) for e in epochs],
            win=win,
            env=self.env,
            name=self.label,
            update=update,
            opts={"title": title, "xlabel": "epoch", "ylabel": ylabel, "showlegend": True},
        )

    def epoch(self, stats: EpochStats) -> None:
        # The whole line each time, replacing this run's trace: two runs that both find a
        # window missing both create it, and visdom keeps only the second one's points. The
        # next epoch's send restores the first run's line, not just its newest point.
        self.sent.append(stats)
        for win, title, ylabel in WINDOWS:
            self._send(win, title, ylabel, self.sent, replace=True)

    def finish(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self.vis is not None:
            self.vis.save([self.env])  # the server keeps the env across its restarts
