"""The `eowatch samples extract` command."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, time
from pathlib import Path

from eowatch.errors import EowatchError
from eowatch.settings import comma_list


def add_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("samples", help="training samples from a feed",
                                description="Training samples from a feed.")
    sub = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    extract = sub.add_parser(
        "extract", help="labelled parcels + a season of Sentinel-2 -> long-format Parquet",
        description="Search the Sentinel-2 STAC API (EOWATCH_S2_* settings) over labelled "
        "parcels for one season, measure every parcel in every item with the daemon's reading "
        "code, and write the long-format Parquet that `eowatch train` reads.")
    extract.add_argument("--parcels", type=Path, required=True,
                         help="GeoJSON, GeoPackage or Shapefile of labelled parcels, any CRS")
    extract.add_argument("--season", required=True,
                         help="START/END dates (or times) of the season, e.g. "
                         "2024-01-01/2024-12-31")
    extract.add_argument("--out", type=Path, default=Path("samples.parquet"),
                         help="Parquet file to write (default samples.parquet)")
    extract.add_argument("--id-field", help="attribute holding the parcel id (default: fid)")
    extract.add_argument("--label-field", default="label",
                         help="attribute holding the crop label (default label)")
    extract.add_argument("--bands", type=comma_list, help="comma-separated bands in model "
                         "order (default: the configured model's)")
    extract.add_argument("--min-valid-fraction", type=float,
                         help="leave out cloudier observations (default "
                         "EOWATCH_MIN_VALID_FRACTION)")
    extract.add_argument("--config", type=Path, help="TOML settings file [env: EOWATCH_CONFIG]")
    extract.set_defaults(handler=run_extract)


def _when(text: str, end: bool) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise EowatchError(f"--season: {text!r} is not an ISO date or time") from None
    if len(text) <= 10 and end:
        value = datetime.combine(value.date(), time.max)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_extract(args: argparse.Namespace) -> int:
    from eowatch.contract.registry import load_feed_settings
    from eowatch.models.artifact import load_artifact
    from eowatch.settings import load_settings

    from .samples import extract, labelled_parcels
    from .sentinel2 import FEED_SPEC

    settings = load_settings(config=args.config) if args.config else load_settings()
    start_text, _, end_text = args.season.partition("/")
    if not end_text:
        raise EowatchError("--season needs START/END, e.g. 2024-01-01/2024-12-31")
    start, end = _when(start_text, False), _when(end_text, True)
    bands = args.bands or load_artifact(settings.model_path).metadata.band_names
    parcels, labels = labelled_parcels(args.parcels, args.id_field, args.label_field)
    if not len(parcels):
        raise EowatchError(f"{args.parcels}: no labelled parcel to extract")
    config = load_feed_settings(FEED_SPEC, settings.config).config()  # type: ignore[attr-defined]
    report = extract(parcels, labels, start, end, bands, config,
                     args.min_valid_fraction if args.min_valid_fraction is not None
                     else settings.min_valid_fraction, args.out)
    print(f"{args.out}: {len(parcels)} parcels, {report.summary()}")
    return 0
