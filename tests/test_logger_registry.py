"""The logger registry matches the config: every logger=<name> choice has one entry, keyed by
its LoggerConfig field, and open_loggers opens exactly the loggers a config sets."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from mlp_sweep.config import LoggerConfig, VisdomConfig
from mlp_sweep.loggers import LOGGERS, open_loggers

CONF = Path(__file__).resolve().parent.parent / "conf" / "logger"


def logger_fields() -> dict[str, type]:
    """LoggerConfig's loggers: its fields whose settings are a dataclass (None: off)."""
    hints = typing.get_type_hints(LoggerConfig)
    found = {}
    for f in dataclasses.fields(LoggerConfig):
        kinds = [t for t in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(t)]
        if kinds:
            found[f.name] = kinds[0]
    return found


def test_every_logger_in_the_config_is_in_the_registry() -> None:
    choices = {p.stem for p in CONF.glob("*.yaml")} - {"none"}
    assert set(LOGGERS) == set(logger_fields()) == choices


@pytest.mark.parametrize("name", sorted(LOGGERS))
def test_a_logger_is_named_by_its_key_and_made_from_its_settings(name: str) -> None:
    settings = logger_fields()[name]()
    logger = LOGGERS[name](settings)
    assert logger.name == name
    assert logger.finish_seconds > 0


def test_visdom_may_take_its_flush_timeout_to_finish() -> None:
    assert LOGGERS["visdom"](VisdomConfig(flush_timeout=7.5)).finish_seconds == 7.5


def test_open_loggers_opens_only_what_the_config_sets() -> None:
    assert open_loggers(LoggerConfig()).names == []
    loggers = open_loggers(LoggerConfig(visdom=VisdomConfig(port=1, flush_timeout=1.0)))
    try:
        assert loggers.names == ["visdom"]
    finally:
        loggers.close()
