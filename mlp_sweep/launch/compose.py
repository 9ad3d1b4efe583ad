"""Compose a sweep's jobs once per structure instead of once per job.

Hydra composes every job of a sweep from scratch (search path, defaults list, every YAML file,
the schema), twice: the sweeper checks each batch, then the launcher composes each job again.
For mlp_sweep's config that is ~100 ms a job, most of a trivial job's cost. Yet Hydra's own
compose has two stages: the defaults list, which only config-group overrides and hydra.*
overrides can change, then every other override applied to the composed config, in order
(ConfigLoaderImpl._apply_overrides_to_config). Jobs that differ only in the second kind
(`seed=range(1000)`, `optim.lr=...`) share the first stage; CachedLoader runs it once per
distinct set of structural overrides and repeats only the second stage per job, with Hydra's
own function, then fills in the per-job fields Hydra derives from the overrides
(hydra.overrides.task, hydra.job.override_dirname). A job whose overrides do not apply cleanly
is composed by Hydra in full, so its error is Hydra's own.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mlp_sweep.hydra_compat import apply_overrides, overrides_dirname
from mlp_sweep.run.interrupt import signals_held

P = ParamSpec("P")
R = TypeVar("R")


def held(method: Callable[P, R]) -> Callable[P, R]:
    """The method, with SIGINT and SIGTERM held to its end (mlp_sweep.run.interrupt): a
    KeyboardInterrupt raised inside OmegaConf leaves a node half-built, and surfaces as an
    AttributeError's traceback instead of a stopped sweep."""

    @functools.wraps(method)
    def holding(*args: P.args, **kwargs: P.kwargs) -> R:
        with signals_held():
            return method(*args, **kwargs)

    return holding


class CachedLoader(ConfigLoader):
    """A ConfigLoader that gives Hydra's results for a sweep's jobs at a fraction of the cost.

    Wraps Hydra's loader; everything but load_configuration and load_sweep_config is its.
    """

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self._bases: dict[tuple[Any, ...], DictConfig] = {}
        self._groups: dict[str, bool] = {}
        self._scratch: dict[tuple[Any, ...], DictConfig] = {}
        self._parsed: dict[str, Override] = {}  # a sweep repeats its fixed overrides every job
        self._parser = OverridesParser.create()
        self.composes = 0  # Hydra's full composes so far (tests count them)

    def __getstate__(self) -> dict[str, Any]:  # shipped to workers: without the cache
        return {"loader": self.loader}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["loader"])  # type: ignore[misc]

    def _full(self, config_name: str | None, overrides: list[str], *args: Any) -> DictConfig:
        self.composes += 1
        return self.loader.load_configuration(config_name, overrides, *args)

    def _is_group(self, key: str) -> bool:
        if key not in self._groups:
            repository = getattr(self.loader, "repository", None)
            # Without Hydra's repository at hand, call everything structural (always correct).
            self._groups[key] = repository is None or repository.group_exists(key)
        return self._groups[key]

    def _applied_later(self, o: Override) -> bool:
        """An override Hydra applies to the composed config rather than to its defaults list
        (defaults_list.Overrides), and that is not a hydra.* setting (shared by a sweep)."""
        if o.is_hydra_override() or o.is_sweep_override():
            return False
        return isinstance(o.value(), dict) or not self._is_group(o.key_or_group)

    def _split(self, overrides: list[str]) -> tuple[list[Override], list[bool]] | None:
        try:
            for text in overrides:
                if text not in self._parsed:
                    self._parsed[text] = self._parser.parse_overrides([text])[0]
        except Exception:
            return None
        parsed = [self._parsed[text] for text in overrides]
        return parsed, [self._applied_later(o) for o in parsed]

    @held
    def load_configuration(
        self,
        config_name: str | None,
        overrides: list[str],
        run_mode: RunMode,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        args = (run_mode, from_shell, validate_sweep_overrides)
        split = self._split(overrides)
        if split is None:
            return self._full(config_name, overrides, *args)
        parsed, later = split
        structural = tuple(
            str(o.input_line) for o, late in zip(parsed, later, strict=True) if not late
        )
        key = (config_name, structural, *args)
        if key not in self._bases:
            self._bases[key] = self._full(config_name, list(structural), *args)
        cfg = copy.deepcopy(self._bases[key])
        app = [o for o in parsed if not o.is_hydra_override()]
        try:
            apply_overrides([o for o, late in zip(parsed, later, strict=True) if late], cfg)
        except Exception:  # say it as Hydra says it
            return self._full(config_name, overrides, *args)
        cfg.hydra.overrides.task = [o.input_line for o in app]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = overrides_dirname(
            overrides=app,
            kv_sep=dirname.kv_sep,
            item_sep=dirname.item_sep,
            exclude_keys=dirname.exclude_keys,
        )
        return cfg

    @held
    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        """Hydra's ConfigLoaderImpl.load_sweep_config, through the cache."""
        sweep_config = self.load_configuration(
            config_name=master_config.hydra.job.config_name,
            overrides=_job_overrides(master_config, sweep_overrides),
            run_mode=RunMode.RUN,
        )
        # As Hydra does: the same resolved values as the sweep's (timestamps, oc.env).
        OmegaConf.copy_cache(from_config=master_config, to_config=sweep_config)
        return sweep_config

    @held
    def check_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> None:
        """Raise what load_sweep_config would raise for this job, without building its config.

        Jobs whose overrides have the same structure and the same keys in the same forms
        (`k=v`, `+k=v`, `~k`) differ in values only; their overrides are applied in turn to one
        scratch copy, each job's setting every key the last one set. Where that fails (a second
        `+k=v` onto the same copy, say) the job is composed in full, which decides.
        """
        split = self._split(_job_overrides(master_config, sweep_overrides))
        if split is not None and not any(isinstance(o.value(), dict) for o in split[0]):
            # (a dict value merges into what is there: the scratch copy would keep old keys)
            parsed, later = split
            late = [o for o, is_late in zip(parsed, later, strict=True) if is_late]
            structural = tuple(
                str(o.input_line) for o, is_late in zip(parsed, later, strict=True) if not is_late
            )
            forms = tuple(
                (o.key_or_group, o.is_add(), o.is_force_add(), o.is_delete()) for o in late
            )
            key = (master_config.hydra.job.config_name, structural, forms)
            scratch = self._scratch.get(key)
            if scratch is None:
                scratch = self._scratch[key] = self.load_configuration(
                    master_config.hydra.job.config_name, list(structural), RunMode.RUN
                )
            try:
                apply_overrides(late, scratch)
                return
            except Exception:
                self._scratch.pop(key)  # in an unknown state now
        self.load_sweep_config(master_config, list(sweep_overrides))

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> Any:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # ConfigLoaderImpl's extras (repository, ...)
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


def _job_overrides(master_config: DictConfig, sweep_overrides: list[str]) -> list[str]:
    """What Hydra composes a sweep's job from: the sweep's hydra.* overrides, then the job's."""
    hydra_overrides = OmegaConf.to_container(master_config.hydra.overrides.hydra)
    assert isinstance(hydra_overrides, list)
    return [str(o) for o in hydra_overrides] + list(sweep_overrides)
