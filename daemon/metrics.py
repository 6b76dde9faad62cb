"""Prometheus metrics of the daemon; the registry is injected so tests can read values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from eowatch.contract.feeds import FeedMetrics


class Metrics(FeedMetrics):
    """Every metric eowatch exports: the feeds' and the daemon's. No per-parcel labels: label
    values are bounded sets (feeds, classes, reasons)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.observations = Counter("eowatch_observations_consumed_total",
                                    "Parcel observations fed to the model", ["feed"], registry=r)
        self.observations_skipped = Counter(
            "eowatch_observations_skipped_total",
            "Parcel observations not fed to the model (cloudy, duplicate, late)", ["reason"],
            registry=r)
        self.observations_reordered = Counter(
            "eowatch_late_observations_applied_total",
            "Late observations inserted at their date: the target was stepped again from its "
            "observation log", ["feed"], registry=r)
        self.chunks = Counter("eowatch_chunks_consumed_total", "Observation chunks consumed",
                              ["feed"], registry=r)
        self.decisions = Counter("eowatch_decisions_total", "Crop decisions emitted",
                                 ["feed", "crop", "forced"], registry=r)
        self.step_seconds = Histogram(
            "eowatch_model_step_seconds", "Duration of one batched model step, by kind of "
            "target (parcels: the crop model; cells: the flood model)", ["targets"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        self.batch_parcels = Histogram(
            "eowatch_model_step_parcels", "Targets in one batched model step", ["targets"],
            registry=r,
            buckets=(1, 16, 64, 256, 1024, 4096, 16384, 65536))
        self.parcels_decided = Gauge(
            "eowatch_parcels_decided",
            "Parcels in memory decided in their current season (beside eowatch_targets_tracked)",
            registry=r)
        self.season_day = Gauge("eowatch_season_day",
                                "Day of season of the latest acquisition stepped", registry=r)
        self.alerts = Counter("eowatch_alerts_total", "Flood alerts emitted, by kind",
                              ["kind"], registry=r)
        # per area: areas are a short list an operator imports, not millions of targets
        self.flood_open = Gauge("eowatch_area_flood_open",
                                "1 while the area has an open flood event", ["area"], registry=r)
        self.flooded_km2 = Gauge("eowatch_area_flooded_km2",
                                 "Flooded km² of the area at its last observation", ["area"],
                                 registry=r)
        self.webhook_deliveries = Counter(
            "eowatch_webhook_deliveries_total",
            "Webhook deliveries finished, by outcome: delivered, or failed (schedule ran out)",
            ["outcome"], registry=r)
        self.webhook_attempts = Counter(
            "eowatch_webhook_attempts_total",
            "Webhook attempts by result: 2xx, 3xx, 4xx, 5xx, timeout, connection, refused",
            ["result"], registry=r)
        self.webhook_queue = Gauge("eowatch_webhook_queue_depth",
                                   "Webhook deliveries pending", registry=r)
        self.webhook_oldest = Gauge("eowatch_webhook_oldest_pending_seconds",
                                    "Age of the oldest pending webhook delivery", registry=r)
        self.webhook_disabled = Counter(
            "eowatch_webhook_endpoints_disabled_total",
            "Subscriptions disabled (410 Gone, or failing for 5 days)", registry=r)
        self.consumer_lag = Gauge("eowatch_consumer_lag_messages",
                                  "Messages behind the end of the assigned partitions",
                                  registry=r)
        self.dead_letters = Counter("eowatch_dead_letters_total",
                                    "Records sent to the dead-letter topic", ["reason"],
                                    registry=r)
        self.checkpoint_errors = Counter(
            "eowatch_checkpoint_errors_total",
            "Checkpoint writes that failed (their snapshot is written again by the next one)",
            registry=r)
        self.checkpoint_seconds = Histogram("eowatch_checkpoint_seconds",
                                            "Duration of one checkpoint transaction", registry=r)
        self.targets_tracked = Gauge("eowatch_targets_tracked",
                                     "Targets with a state in this consumer, by kind (parcels, "
                                     "cells)", ["targets"], registry=r)
        self.handovers = Counter("eowatch_partition_handovers_total",
                                 "Partitions assigned to or revoked from this consumer",
                                 ["event"], registry=r)
        self.partitions_assigned = Gauge("eowatch_partitions_assigned",
                                         "Partitions this consumer owns", registry=r)
        self.handover_seconds = Histogram("eowatch_handover_seconds",
                                          "Time to load the checkpoints of assigned partitions",
                                          registry=r)
        self.shard_loads = Counter("eowatch_shard_loads_total",
                                   "Shards loaded from their checkpoints", registry=r)
        self.shard_load_seconds = Histogram("eowatch_shard_load_seconds",
                                            "Duration of loading shards from the store",
                                            registry=r)
        self.shard_evictions = Counter("eowatch_shard_evictions_total",
                                       "Shards paged out to keep state within its budget",
                                       registry=r)
        self.queue_depth = Gauge("eowatch_queue_depth", "Batches waiting between stages",
                                 ["stage"], registry=r)
        self.output_errors = Counter("eowatch_output_errors_total",
                                     "Failed attempts to publish outputs (retried)", registry=r)
        self.reachable = Gauge("eowatch_dependency_up",
                               "1 when the dependency answers (checked at each scrape)",
                               ["dependency"], registry=r)
        self.build = Info("eowatch_build", "Version, model and backends", registry=r)
