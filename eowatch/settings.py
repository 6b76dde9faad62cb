"""All configuration, read once from the environment (EOWATCH_*) and an optional TOML file.

Nothing else in eowatch reads os.environ: the frozen Settings object is passed in.
Precedence: constructor arguments > environment > config file (EOWATCH_CONFIG) > defaults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import pydantic_settings
from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import EowatchError
from .seasons import check_season_start

# the bundled model, as package data: found the same in a checkout and in an installed wheel
DEFAULT_MODEL = Path(str(resources.files("eowatch.models") / "default" /
                         "sentinel2-simulated.pt"))


def comma_list(text: str) -> tuple[str, ...]:
    """"a, b,c" -> ("a", "b", "c"): how settings and command-line options take lists."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


Item = TypeVar("Item")
# a setting that is a list: comma separated in the environment, a list in the TOML file
CommaList = Annotated[tuple[Item, ...], NoDecode,
                      BeforeValidator(lambda v: comma_list(v) if isinstance(v, str) else v)]


class SettingsError(EowatchError, ValueError):
    """A setting with a value eowatch cannot use; the message names it and the fix."""


class Settings(BaseSettings):
    """eowatch settings; each field is the variable EOWATCH_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_", frozen=True, extra="forbid",
                                      env_nested_delimiter="__")

    config: Path | None = Field(None, description="TOML file with any of these settings")
    data_dir: Path = Field(Path("var"), description="where the embedded store and logs live")
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default sqlite:///<data_dir>/eowatch.db; "
        "postgresql+psycopg://user@host/db for PostgreSQL")
    bus: Literal["embedded", "kafka"] = Field(
        "embedded", description="embedded (durable in-process log in the store) or kafka")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    topic_prefix: str = Field("eowatch", description="topics are <prefix>.observations, "
                              "<prefix>.decisions, <prefix>.alerts, <prefix>.deadletter")
    partitions: int = Field(16, ge=1, description="partitions of each topic when created")
    shards: int = Field(256, ge=1, description="N_SHARDS: fixed per deployment, >= partitions")
    consumer_group: str = Field("eowatch-daemon", description="consumer group of the daemon")
    model_path: Path = Field(DEFAULT_MODEL, description="model artifact (default: bundled)")
    device: str = Field("auto", description="auto (cuda when present), cpu or cuda")
    stop_threshold: float | None = Field(
        None, gt=0, le=1, description="override the model's stopping threshold")
    min_valid_fraction: float = Field(
        0.5, ge=0, le=1,
        description="observations with fewer valid (cloud-free) pixels are skipped")
    season_start: str | None = Field(
        None, description="season start MM-DD of parcels imported without one (default: the "
        "model's season; 02-29 is 03-01 in other years)")
    feeds: CommaList[str] = Field(
        ("simulated", "simulated-sentinel1"), description="enabled feeds, comma separated; each "
        "has settings of its own (`eowatch feeds`)")
    poll_jitter_seconds: float = Field(0.0, ge=0, description="random delay added to each poll")
    consume: bool = Field(True, description="consume observations (false: a member that only "
                          "runs its feeds and the API)")
    api_host: str = Field("127.0.0.1", description="HTTP API bind address")
    api_port: int = Field(8080, ge=0, le=65535, description="HTTP API port (0 = pick a free one)")
    api_read_open: bool = Field(True, description="reading decisions, alerts, parcels and "
                                "areas needs no token (writing always does)")
    webhook_allow_cidrs: CommaList[str] = Field(
        (), description="webhook targets allowed although internal (CIDRs, comma separated); "
        "all others must resolve to public addresses")
    webhook_threads: int = Field(8, ge=1, le=256, description="webhooks sent at once")
    checkpoint_seconds: float = Field(
        2.0, gt=0, description="checkpoint this often (later while the previous write runs)")
    checkpoint_chunks: int = Field(2000, ge=1, description="checkpoint after this many chunks")
    state_budget_bytes: int | None = Field(
        None, ge=1, description="memory for parcel state; beyond it, least recently used shards "
        "are paged out to the store (default: no limit)")
    state_dtype: Literal["float32", "float16"] = Field(
        "float32", description="precision of the stored recurrent state (float16 halves it)")
    step_batch: int = Field(2048, ge=1, description="most parcels in one model step")
    poll_max_records: int = Field(512, ge=1, description="chunks read per consumer poll")
    log_retention_days: float = Field(
        730, ge=0, description="keep each parcel's observation log (its evidence, and what late "
        "observations are re-stepped from) this long after its season's last write; 0: no log "
        "(late observations are then skipped)")

    @field_validator("webhook_allow_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network (CIDR such as 10.20.0.0/16 or "
                                 "fd00::/8)") from None
        return value

    @field_validator("season_start")
    @classmethod
    def _season_start(cls, value: str | None) -> str | None:
        return check_season_start(value)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = init_settings().get("config") or env_settings().get("config")
        if config:
            if not Path(config).is_file():
                raise SettingsError(f"EOWATCH_CONFIG: {config} not found; give the path of a "
                                    "TOML file or unset the variable")
            sources.append(_OwnKeys(settings_cls, toml_file=Path(config)))
        return tuple(sources)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'eowatch.db'}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"


class _OwnKeys(TomlConfigSettingsSource):
    """The daemon's keys of the TOML file; the others belong to feeds (their prefixes), which
    ``eowatch.contract.registry.check_config_keys`` checks."""

    def __call__(self) -> dict[str, object]:
        fields = self.settings_cls.model_fields
        return {key: value for key, value in super().__call__().items() if key in fields}


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and config file; errors name the setting and the fix."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except pydantic_settings.SettingsError as exc:
        raise SettingsError(f"invalid settings: {exc}; fix the variable (or the config file)"
                            ) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"EOWATCH_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}. Fix the variable (or the config "
                            "file) and start again") from None
    if settings.shards < settings.partitions:
        raise SettingsError(f"EOWATCH_SHARDS={settings.shards} is below EOWATCH_PARTITIONS="
                            f"{settings.partitions}; a partition would get no shard: raise shards")
    return settings
