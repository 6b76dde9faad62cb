"""Finds the feeds and loads their settings.

A feed is any module of ``eowatch.adapters`` that defines ``FEED_SPEC``, or any object named by
an ``eowatch.feeds`` entry point (a feed shipped in another package): adding one needs no line
anywhere else. Modules are found by name at run time, so neither side imports the other.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import ValidationError

from eowatch.errors import EowatchError

from .feeds import FeedSettings, FeedSpec, read_toml

FEED_PACKAGE = "eowatch.adapters"
ENTRY_POINT_GROUP = "eowatch.feeds"


class FeedError(EowatchError, ValueError):
    """A feed that is unknown, defined twice or wrongly configured."""


@cache
def feed_specs() -> dict[str, FeedSpec]:
    """Every feed, by name."""
    specs: dict[str, FeedSpec] = {}

    def add(spec: object, where: str) -> None:
        if not isinstance(spec, FeedSpec):
            raise FeedError(f"{where}: FEED_SPEC is not a FeedSpec")
        if spec.name in specs:
            raise FeedError(f"feed {spec.name!r} is defined twice ({where})")
        specs[spec.name] = spec

    package = importlib.import_module(FEED_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__, f"{FEED_PACKAGE}."):
        spec = getattr(importlib.import_module(module.name), "FEED_SPEC", None)
        if spec is not None:
            add(spec, module.name)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        add(point.load(), f"entry point {point.value}")
    return dict(sorted(specs.items()))


def feed_spec(name: str) -> FeedSpec:
    specs = feed_specs()
    if name not in specs:
        raise FeedError(f"EOWATCH_FEEDS names unknown feed {name!r}; known: "
                        f"{', '.join(specs)} (`eowatch feeds` lists them)")
    return specs[name]


def load_feed_settings(spec: FeedSpec, config: Path | None,
                       overrides: Mapping[str, object] | None = None) -> FeedSettings:
    """The feed's settings; errors name the variable, as the daemon's settings do."""
    cls = spec.settings
    prefix = str(cls.model_config.get("env_prefix", ""))
    cls.config_file = config
    try:
        return cls(**dict(overrides or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{prefix}{'__'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise FeedError(f"invalid settings of feed {spec.name}: {problems}") from None
    finally:
        cls.config_file = None


def check_config_keys(config: Path | None, daemon_keys: set[str]) -> None:
    """Every key of the TOML settings file belongs to the daemon or to a feed: a typo is an
    error, not a setting silently left at its default."""
    if config is None:
        return
    prefixes = tuple(spec.settings.toml_prefix() for spec in feed_specs().values())
    unknown = [key for key in read_toml(config)
               if key not in daemon_keys and not (prefixes and key.startswith(prefixes))]
    if unknown:
        raise FeedError(f"{config}: unknown setting(s) {', '.join(sorted(unknown))}; "
                        "`eowatch settings` and `eowatch feeds` list the known ones")
