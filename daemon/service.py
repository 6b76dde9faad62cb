"""Wires settings, store, bus, model, feeds, consumer, scheduler and API into one process."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType

import sqlalchemy as sa
import torch
import uvicorn

from eowatch import __version__
from eowatch.contract.feeds import Feed, FeedContext
from eowatch.contract.registry import check_config_keys, feed_spec, load_feed_settings
from eowatch.errors import EowatchError
from eowatch.models.artifact import LoadedModel, ModelMetadata, load_artifact
from eowatch.settings import Settings

from . import scheduler as jobs
from .api import create_app
from .areas import FEED_BANDS, AreaProcessor
from .bus.base import Bus, BusError
from .bus.embedded import EmbeddedBus, committed_offsets
from .checkpoints import CheckpointError
from .consuming import Consumer
from .evidence import Explainer
from .metrics import Metrics
from .processing import Processor
from .publisher import Publisher
from .registry import cell_registry, parcel_registry
from .state_model import CropModel
from .store.store import Store
from .webhooks.delivery import DeliveryWorker
from .webhooks.matching import SubscriptionIndex
from .webhooks.targets import parse_networks

log = logging.getLogger(__name__)
LOG_PRUNE_SECONDS = 3600.0
TOPICS = ("observations", "decisions", "alerts", "deadletter")


def pick_device(setting: str) -> str:
    """The torch device of EOWATCH_DEVICE: auto, cpu, cuda or cuda:N."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(setting)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise EowatchError(f"EOWATCH_DEVICE={setting!r} is not a device eowatch runs on; use "
                           "auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise EowatchError(f"EOWATCH_DEVICE={setting} but torch sees {count} CUDA "
                               "device(s); use auto or cpu")
    return setting


def deployment_invariants(settings: Settings) -> dict[str, str]:
    """What must not change while a store lives: where each parcel's state is (its shard) and,
    on Kafka, which partition carries each shard."""
    fixed = {"shards": str(settings.shards)}
    if settings.bus == "kafka":
        fixed["partitions"] = str(settings.partitions)
    return fixed


def bind_api(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound now: a taken port fails the start, not a thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EowatchError(f"cannot serve the API on {host}:{port} ({exc.strerror}); another "
                           "process holds the port: stop it or set EOWATCH_API_PORT") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def build_bus(settings: Settings, store: Store) -> Bus:
    if settings.bus == "kafka":
        from .bus.kafka import KafkaBus
        return KafkaBus(settings.kafka_bootstrap, store, settings.partitions)
    return EmbeddedBus(store)


def build_feeds(settings: Settings, context: FeedContext,
                overrides: Mapping[str, Mapping[str, object]] | None = None) -> list[Feed]:
    """The feeds named in EOWATCH_FEEDS, each with its own settings (``overrides``: per feed,
    arguments that take precedence over its environment and file)."""
    check_config_keys(settings.config, set(Settings.model_fields))
    feeds = []
    for name in settings.feeds:
        spec = feed_spec(name)
        feed_settings = load_feed_settings(spec, settings.config, (overrides or {}).get(name))
        feeds.append(spec.factory(feed_settings, context))
    return feeds


def check_feed(feed: Feed, crop: LoadedModel) -> None:
    """Refuse a feed whose bands are not those of the state model of its targets."""
    if feed.targets == "parcels":
        crop.check_bands(feed.name, feed.band_names)
    elif feed.targets == "cells":
        if tuple(feed.band_names) not in FEED_BANDS:
            raise EowatchError(f"feed {feed.name!r} observes cells with bands "
                               f"{list(feed.band_names)}; the flood model reads one of "
                               f"{' or '.join(str(list(b)) for b in FEED_BANDS)}")
    else:
        raise EowatchError(f"feed {feed.name!r} observes {feed.targets!r}; this daemon runs "
                           "state models for parcels and cells")


def resolve_season_start(settings: Settings, model: ModelMetadata) -> str:
    """The season start of parcels registered without one: the setting, else the model's."""
    start = settings.season_start or model.season_start
    if start is None:
        raise EowatchError(
            f"model {model.version} records no season start (it was trained on samples whose "
            "seasons start on different days, or on series without a calendar): set "
            "EOWATCH_SEASON_START=MM-DD to the season start its training data used, or retrain "
            "with `eowatch train --season-start MM-DD`")
    return start


class Daemon:
    def __init__(self, settings: Settings, metrics: Metrics | None = None,
                 feed_settings: Mapping[str, Mapping[str, object]] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stop_event = threading.Event()
        self.device = pick_device(settings.device)
        self.store = Store(settings.resolved_store_url)
        self.store.migrate()
        self.store.check_deployment(deployment_invariants(settings))
        self.bus = build_bus(settings, self.store)
        self.topics = {name: settings.topic(name) for name in TOPICS}
        self.bus.ensure_topics(list(self.topics.values()))
        self.model = load_artifact(settings.model_path, self.device)
        adopted = self.store.adopt_states(self.model.sha256)
        if adopted:
            log.info("%d state rows written before state was keyed by model now belong to "
                     "model %s", adopted, self.model.metadata.version)
        self.adapters = build_feeds(settings, FeedContext(
            Publisher(self.bus, self.store, self.topics["observations"]),
            self.model.metadata.band_names, settings.shards, self.metrics), feed_settings)
        for adapter in self.adapters:
            check_feed(adapter, self.model)
        self.processor = Processor(
            CropModel(self.model, settings.stop_threshold), parcel_registry(self.store),
            self.metrics, settings.min_valid_fraction,
            resolve_season_start(settings, self.model.metadata), self.device,
            torch.float16 if settings.state_dtype == "float16" else torch.float32,
            load_states=self.store.load_states, budget_bytes=settings.state_budget_bytes,
            step_batch=settings.step_batch,
            read_log=self.store.read_log if settings.log_retention_days > 0 else None)
        self.areas = AreaProcessor(cell_registry(self.store), self.metrics,
                                   settings.min_valid_fraction, self.store.area_cells,
                                   load_states=self.store.load_states,
                                   budget_bytes=settings.state_budget_bytes,
                                   read_log=self.processor.read_log)
        # a member that only runs feeds (EOWATCH_CONSUME=false) joins no consumer group
        self.consumer = Consumer(self.topics, settings.consumer_group, self.bus, self.store,
                                 [self.processor, self.areas], self.metrics, settings.shards,
                                 settings.poll_max_records, settings.checkpoint_seconds,
                                 settings.checkpoint_chunks, stop=self.stop_event,
                                 subscriptions=SubscriptionIndex(self.store)) \
            if settings.consume else None
        allowed = parse_networks(settings.webhook_allow_cidrs)
        self.webhooks = DeliveryWorker(
            self.store, self.metrics, allowed, threads=settings.webhook_threads,
            owner=self.consumer.member if self.consumer else f"{socket.gethostname()}:feeds")
        self.webhook_stop = threading.Event()
        # what /readyz checks, as metrics: an outage shows on dashboards and in alerts
        self.metrics.reachable.labels("bus").set_function(lambda: float(self.bus.ping()))
        self.metrics.reachable.labels("store").set_function(lambda: float(self.store.ping()))
        self.metrics.build.info({"version": __version__, "model": self.model.metadata.version,
                                 "bus": settings.bus, "store": self.store.backend,
                                 "device": self.device})
        self.scheduler = jobs.build_scheduler(self.adapters, self.metrics,
                                              settings.poll_jitter_seconds)
        self.api_socket = bind_api(settings.api_host, settings.api_port)
        self.api_port = self.api_socket.getsockname()[1]
        self.api = uvicorn.Server(uvicorn.Config(
            create_app(self.store, self.bus, self.metrics, self.model.metadata,
                       self.model.sha256, settings.api_read_open, allowed,
                       explainer=Explainer(self.store, self.model.metadata, self.model.sha256,
                                           settings.stop_threshold
                                           or self.model.metadata.stop_threshold,
                                           self.processor.default_season_start)),
            host=settings.api_host, port=settings.api_port, log_level="warning",
            access_log=False))

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("signal %s: finishing the chunk in flight, then exiting", signum)
        self.stop_event.set()

    def serve_api(self) -> threading.Thread:
        thread = threading.Thread(target=self.api.run, kwargs={"sockets": [self.api_socket]},
                                  name="api", daemon=True)
        thread.start()
        return thread

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        api_thread = self.serve_api()
        webhook_thread = threading.Thread(target=self.webhooks.run, args=(self.webhook_stop,),
                                          name="webhooks", daemon=True)
        webhook_thread.start()
        jobs.start(self.scheduler)
        log.info("eowatch %s running: model %s on %s, bus %s, store %s, feeds %s, %s, API "
                 "http://%s:%s", __version__, self.model.metadata.version, self.device,
                 self.settings.bus, self.store.backend, ",".join(self.settings.feeds) or "none",
                 "consuming" if self.consumer else "not consuming",
                 self.settings.api_host, self.api_port)
        last_prune = last_log_prune = time.monotonic()
        try:
            while not self.stop_event.is_set():
                try:
                    if self.consumer is None:
                        self.stop_event.wait(0.5)
                    else:
                        self.consumer.run_once(timeout_s=0.5)
                except BusError as exc:
                    log.error("bus: %s; retrying in 2 s", exc)
                    self.stop_event.wait(2.0)
                except CheckpointError as exc:  # kept; the next checkpoint writes it again
                    log.error("store: %s; retrying in 2 s", exc)
                    self.stop_event.wait(2.0)
                if isinstance(self.bus, EmbeddedBus) and time.monotonic() - last_prune > 30:
                    self.bus.prune(committed_offsets(self.store))
                    last_prune = time.monotonic()
                if self.settings.log_retention_days and \
                        time.monotonic() - last_log_prune > LOG_PRUNE_SECONDS:
                    self.prune_log()
                    last_log_prune = time.monotonic()
        finally:
            self.shutdown(api_thread)
        return 0

    def prune_log(self) -> None:
        """Delete the observation log of seasons nobody wrote to within the retention."""
        try:
            pruned = self.store.prune_log(
                datetime.now(UTC) - timedelta(days=self.settings.log_retention_days))
        except sa.exc.SQLAlchemyError as exc:  # retried at the next round
            log.error("pruning the observation log failed (%s)", exc.__class__.__name__)
            return
        if pruned:
            log.info("pruned the observation log of %d target-season(s)", pruned)

    def shutdown(self, api_thread: threading.Thread | None = None) -> None:
        for adapter in self.adapters:
            adapter.stop()
        if self.scheduler.running:  # a poll in flight commits or leaves no trace
            self.scheduler.shutdown(wait=True)
        self.api.should_exit = True
        if api_thread is not None:
            api_thread.join(timeout=5)
        self.webhook_stop.set()   # the worker ends its round (at most one send's timeout)
        self.webhooks.close()
        if self.consumer is not None:
            self.consumer.close()
        self.api_socket.close()
        self.bus.close()
        self.store.close()
        log.info("eowatch stopped: %s", dict(self.consumer.tally) if self.consumer else {})
