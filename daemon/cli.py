"""The `eowatch run`, `eowatch parcels import`, `eowatch areas import`, `eowatch backfill`,
`eowatch explain`, `eowatch settings`, `eowatch feeds` and `eowatch tokens` commands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from eowatch.cells import DEFAULT_CELL_METRES, DEFAULT_COARSE_METRES
from eowatch.settings import Settings, load_settings


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run the daemon",
        description="Run the daemon: feeds, consumer, API and metrics. Configured by EOWATCH_* "
                    "variables or a TOML file (see `eowatch settings`).")
    run.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
    run.set_defaults(handler=run_daemon)

    for kind in ("parcels", "areas"):
        group = commands.add_parser(kind, help=f"manage {kind}",
                                    description=f"Manage {kind}.")
        sub = group.add_subparsers(dest="action", metavar="ACTION", required=True)
        imp = sub.add_parser("import", help=f"import {kind} from a vector file",
                             description=f"Import {kind} from GeoJSON, GeoPackage or Shapefile "
                             "in any CRS (stored in WGS84). Invalid or empty geometries are "
                             "reported with their ids and skipped.")
        imp.add_argument("file", type=Path)
        imp.add_argument("--id-field", help="attribute holding the id (default: feature id)")
        if kind == "parcels":
            imp.add_argument("--label-field", help="attribute holding a known crop label")
            imp.add_argument("--season-start-field",
                             help="attribute holding the parcel's season start (MM-DD)")
        else:
            imp.add_argument("--name-field", help="attribute holding the area's name")
            imp.add_argument("--optical", action="store_true",
                             help="also measure the areas' cells in Sentinel-2 (NDWI, MNDWI of "
                             "the clear pixels), second evidence for the flood model")
            imp.add_argument("--cell-size", type=float, default=DEFAULT_CELL_METRES,
                             help="side of the area's square cells in metres, on a grid in its "
                             f"UTM zone (default {DEFAULT_CELL_METRES:g})")
            imp.add_argument("--coarse-cell-size", type=float, default=DEFAULT_COARSE_METRES,
                             help="side of the coarse cells the weather satellites measure "
                             f"(GOES, Meteosat, EPIC), in metres (default "
                             f"{DEFAULT_COARSE_METRES:g})")
        imp.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
        imp.set_defaults(handler=run_import, kind=kind)

    backfill = commands.add_parser(
        "backfill", help="replay a past period of a feed onto the bus",
        description="Publish a feed's acquisitions of a past period (e.g. since the season "
        "started, for a daemon started mid-season) through the same feed code and bus as the "
        "live daemon, in acquisition order, with a progress bar. Its cursor is its own: the "
        "live feed's stays where it is, and running the same period again publishes nothing "
        "twice (an interrupted run resumes). Observations the daemon already has are skipped "
        "as duplicates; older ones than a parcel's newest are inserted at their date. When the "
        "feed has never run live, it continues from the period's end.")
    backfill.add_argument("--feed", required=True, help="the feed to replay (`eowatch feeds`)")
    backfill.add_argument("--since", required=True, type=_when,
                          help="first acquisition time, YYYY-MM-DD or ISO 8601 (UTC if no zone)")
    backfill.add_argument("--until", type=_when,
                          help="last acquisition time (default: now)")
    backfill.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
    backfill.set_defaults(handler=run_backfill)

    explain = commands.add_parser(
        "explain", help="print what the model read of a parcel or flood cell and made of it",
        description="Print a target's evidence from the observation log. A parcel: each "
        "observation's date, the class probabilities and stopping probability after it, the "
        "cloudy dates skipped, late observations, and the decision. A flood cell: each "
        "observation's kind (radar, optical, weather satellite) and values, the cell's status "
        "and flood probability after it, and its area's alerts. The API serves the same as "
        "JSON and PNG (/parcels/{id}/evidence[.png], /cells/{id}/evidence[.png]).")
    explain.add_argument("target", help="parcel id, or cell id (<area>/<row>-<col>)")
    explain.add_argument("--season", type=int, help="season (the year it starts in; a cell: "
                         "the calendar year; default: the latest logged)")
    explain.add_argument("--png", type=Path, help="also write the plot to this file")
    explain.add_argument("--json", action="store_true", help="print JSON instead of a table")
    explain.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
    explain.set_defaults(handler=run_explain)

    show = commands.add_parser("settings", help="print every setting, its variable and value",
                               description="Print every setting with its environment variable, "
                               "its current value and what it does.")
    show.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
    show.set_defaults(handler=show_settings)

    feeds = commands.add_parser("feeds", help="list the feeds and their settings",
                                description="List every feed eowatch knows (enable them with "
                                "EOWATCH_FEEDS) with each of its settings: variable, current "
                                "value and what it does.")
    feeds.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
    feeds.set_defaults(handler=show_feeds)

    tokens = commands.add_parser("tokens", help="manage API tokens",
                                 description="Manage the API's bearer tokens. Writing (webhook "
                                 "subscriptions) needs a write or admin token; reading needs "
                                 "a read token when EOWATCH_API_READ_OPEN=false.")
    sub = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a token and print it (once)",
                            description="Create a token; it is printed once and only its hash "
                            "is kept.")
    create.add_argument("--scope", required=True, choices=("read", "write", "admin"),
                        help="read < write < admin: each can do what the ones before can")
    create.add_argument("--name", default="", help="what it is for")
    listing = sub.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    for parser in (create, listing, revoke):
        parser.add_argument("--config", type=Path,
                            help="TOML settings file [env: EOWATCH_CONFIG]")
    create.set_defaults(handler=run_tokens)
    listing.set_defaults(handler=run_tokens)
    revoke.set_defaults(handler=run_tokens)


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 "
                                         "time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config=args.config) if args.config else load_settings()


def run_daemon(args: argparse.Namespace) -> int:
    from .service import Daemon

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Daemon(settings).run()


def run_import(args: argparse.Namespace) -> int:
    from eowatch.cells import area_cell_rows, grid_of
    from eowatch.parcels import area_rows, parcel_rows

    from .store.store import Store

    settings = _settings(args)
    store = Store(settings.resolved_store_url)
    store.migrate()
    if args.kind == "parcels":
        rows, report = parcel_rows(args.file, settings.shards, args.id_field, args.label_field,
                                   args.season_start_field)
        store.upsert_parcels(rows)
    else:
        rows, report = area_rows(args.file, args.id_field, args.name_field)
        grids = [grid_of(row["id"], row["geometry"], args.cell_size) for row in rows]
        store.upsert_areas([{**row, "optical": args.optical} for row in rows])
        for grid in grids:
            store.replace_cells(grid.area_id, *area_cell_rows(grid, settings.shards,
                                                              args.coarse_cell_size))
        print(f"{sum(g.count for g in grids):,} cells of {args.cell_size:g} m in "
              f"{len(grids)} areas")
    print(f"{args.kind} from {args.file}: {report.summary()}")
    return 0


def run_backfill(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from eowatch.contract.feeds import FeedContext
    from eowatch.contract.registry import feed_spec, load_feed_settings
    from eowatch.models.artifact import load_artifact

    from .metrics import Metrics
    from .publisher import Publisher
    from .service import build_bus, check_feed, deployment_invariants
    from .store.store import Store

    settings = _settings(args)
    until = args.until or datetime.now(UTC)
    if args.since > until:
        print(f"--since {args.since.isoformat()} is after --until {until.isoformat()}")
        return 2
    spec = feed_spec(args.feed)
    store = Store(settings.resolved_store_url)
    store.migrate()
    store.check_deployment(deployment_invariants(settings))
    bus = build_bus(settings, store)
    try:
        topic = settings.topic("observations")
        bus.ensure_topics([topic])
        loaded = load_artifact(settings.model_path)
        feed = spec.factory(load_feed_settings(spec, settings.config), FeedContext(
            Publisher(bus, store, topic), loaded.metadata.band_names, settings.shards,
            Metrics()))
        check_feed(feed, loaded)
        with tqdm(desc=f"backfill {args.feed}", unit="acquisition") as bar:
            try:
                done = feed.backfill(args.since, until, bar)
            except KeyboardInterrupt:
                print("interrupted: the same command resumes where it stopped")
                return 130
    finally:
        bus.close()
        store.close()
    print(f"{args.feed} {args.since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}: {done.published} "
          f"acquisition(s) published in {done.chunks} chunk(s), {done.earlier} published by an "
          f"earlier run, {len(done.skipped)} skipped"
          + ("; the live feed continues from here" if done.handed_over else ""))
    for line in done.skipped:
        print(f"  skipped {line}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    import json

    from eowatch.models.artifact import load_artifact

    from .evidence import (
        Explainer,
        cell_evidence_png,
        cell_evidence_text,
        evidence_png,
        evidence_text,
    )
    from .service import resolve_season_start
    from .store.store import Store

    settings = _settings(args)
    store = Store(settings.resolved_store_url)
    store.migrate()
    loaded = load_artifact(settings.model_path)
    explainer = Explainer(store, loaded.metadata, loaded.sha256,
                          settings.stop_threshold or loaded.metadata.stop_threshold,
                          resolve_season_start(settings, loaded.metadata))
    evidence = explainer.parcel(args.target, args.season)
    text, png = evidence_text, evidence_png
    if evidence is None:
        evidence, text, png = explainer.cell(args.target, args.season), cell_evidence_text, \
            cell_evidence_png
    if evidence is None:
        print(f"{args.target!r} is neither a registered parcel nor a cell")
        return 1
    print(json.dumps(evidence, default=str, indent=1) if args.json else text(evidence))
    if args.png:
        args.png.write_bytes(png(evidence))
        print(f"plot written to {args.png}")
    return 0


def show_settings(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for name, info in Settings.model_fields.items():
        print(f"EOWATCH_{name.upper():<26} = {getattr(settings, name)!s:<40} "
              f"{info.description or ''}")
    return 0


def show_feeds(args: argparse.Namespace) -> int:
    from eowatch.contract.registry import check_config_keys, feed_specs, load_feed_settings

    settings = _settings(args)
    check_config_keys(settings.config, set(Settings.model_fields))
    for name, spec in feed_specs().items():
        state = "enabled" if name in settings.feeds else "disabled"
        print(f"{name} ({state}): {spec.summary}")
        values = load_feed_settings(spec, settings.config)
        prefix = str(spec.settings.model_config.get("env_prefix", ""))
        for field, info in spec.settings.model_fields.items():
            print(f"  {prefix}{field.upper():<{30 - len(prefix)}} = "
                  f"{getattr(values, field)!s:<40} {info.description or ''}")
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    from .store.store import Store
    from .webhooks.tokens import new_token, token_hash

    store = Store(_settings(args).resolved_store_url)
    store.migrate()
    if args.action == "create":
        token = new_token()
        token_id = store.create_token(args.name, args.scope, token_hash(token))
        print(f"token {token_id} ({args.scope}); it is shown this once:\n{token}")
    elif args.action == "list":
        for row in store.list_tokens():
            state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
            print(f"{row['id']}  {row['scope']:<5}  {state:<18}  created "
                  f"{row['created_at']:%Y-%m-%d}  {row['name']}")
    elif not store.revoke_token(args.token_id):
        print(f"no active token {args.token_id}")
        return 1
    else:
        print(f"token {args.token_id} revoked")
    return 0
