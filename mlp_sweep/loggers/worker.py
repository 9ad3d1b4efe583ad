"""One logger's thread: the training loop only enqueues its calls, so a slow or dead server
costs the loop nothing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from mlp_sweep.loggers.protocol import RunLogger, describe_failure


class Worker:
    """Runs a logger's calls in order on a daemon thread; stops calling it after its first
    error, which it reports once through on_error(logger name, the failure in one line)."""

    def __init__(self, logger: RunLogger, on_error: Callable[[str, str], None]) -> None:
        self.logger = logger
        self.on_error = on_error
        self.broken = False
        self.prepared = threading.Event()  # prepare() returned or failed
        self.calls: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._loop, name=f"mlp_sweep-logger-{logger.name}", daemon=True
        )
        self.thread.start()

    def submit(self, call: Callable[[], Any]) -> None:
        if not self.broken:
            self.calls.put(call)

    def _loop(self) -> None:
        while (call := self.calls.get()) is not None:
            if self.broken:
                continue
            try:
                call()
            except Exception as err:  # a logger never fails a run
                self.broken = True
                self.on_error(self.logger.name, describe_failure(err))

    def stop(self, timeout: float) -> bool:
        """Let the queued calls finish, for at most timeout seconds. True when they did."""
        self.calls.put(None)
        self.thread.join(timeout)
        return not self.thread.is_alive()
