"""Sentinel-2 digital numbers to reflectance: (DN + offset) / 10000.

Since processing baseline 04.00 (25 January 2022) ESA adds 1000 to every DN so that dark
pixels can carry negative reflectance; the product states it as BOA_ADD_OFFSET (L2A) or
RADIO_ADD_OFFSET (L1C) = -1000. Older baselines have no offset. Some archives (Earth Search's
COGs) subtract it already and say so in ``earthsearch:boa_offset_applied``, while their
``raster:bands`` still announce ``offset: -0.1``; and that flag is itself wrong for some items.

So the offset is decided from the baseline (read from every place an API writes it:
``s2:processing_baseline``, ``processing:version``, or the ``_Nxxyy_`` of the product id; failing
all, the acquisition date, since every product acquired from 25 January 2022 on has a baseline
of 04.00 or later), with the flag saying whether it is already applied, and then checked against
the data, which can tell the two cases apart where it is dark enough:

- raw data (offset not applied) has no DN below 1000 (that would be reflectance < 0), and dark
  targets (water in the near infrared, deep shadow) pile up against that floor, in [1000, 1100);
- applied data puts those same dark targets below 1000, and natural scenes have no cliff at
  exactly 1000.

The samples are the clear pixels of the windows read around the parcels, so roads, water and
shadows next to the fields count as evidence too.

Where the data contradicts the metadata, the data wins, the contradiction is counted and logged.
Where the data cannot tell (a bright scene), the metadata stands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

OFFSET_BASELINE = (4, 0)       # first processing baseline with the +1000 DN offset
OFFSET_SINCE = datetime(2022, 1, 25, tzinfo=UTC)  # when ESA switched every product to it
OFFSET_DN = -1000
DN_SCALE = 1e-4
MIN_EVIDENCE = 0.01            # share of valid pixels the data test needs on either side
RAW_NOISE = 0.001              # raw data may hold a few negative-reflectance pixels
DARK_BAND = 1000 + 100         # raw DNs in [1000, 1100): reflectance 0 to 0.01

Verdict = Literal["applied", "raw", "undetermined"]


BASELINE_KEYS = ("s2:processing_baseline", "processing:version")
# product ids carry the baseline as _Nxxyy_: S2A_MSIL2A_20230628T063511_N0509_R134_T39QTA_...
PRODUCT_KEYS = ("s2:product_uri", "sentinel:product_id", "s2:product_id", "id")
PRODUCT_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")


def processing_baseline(properties: Mapping[str, Any]) -> tuple[int, int] | None:
    """(major, minor) of the item's processing baseline ("05.09" -> (5, 9)), from whichever
    property states it (Earth Search: ``s2:processing_baseline``; the Copernicus Data Space:
    ``processing:version``; older layouts: only the product id), or None."""
    for key in BASELINE_KEYS:
        text = str(properties.get(key) or "")
        parts = text.split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    for key in PRODUCT_KEYS:
        found = PRODUCT_BASELINE.search(str(properties.get(key) or ""))
        if found:
            return int(found.group(1)), int(found.group(2))
    return None


def data_verdict(samples: Iterable[np.ndarray]) -> Verdict:
    """Whether DNs (valid pixels of one or more bands) look offset-applied, raw, or can't say.

    Applied: in some band at least 1 % of pixels lie below 1000 (raw data cannot, short of
    broken pixels). Raw: no band has more than 0.1 % of its pixels below 1000 and some band has
    at least 1 % of them in [1000, 1100): dark targets piled against the offset.
    """
    below, dark, seen = 0.0, 0.0, False
    for dn in samples:
        if dn.size:
            seen = True
            below = max(below, float(np.mean(dn < 1000)))
            dark = max(dark, float(np.mean((dn >= 1000) & (dn < DARK_BAND))))
    if seen and below >= MIN_EVIDENCE:
        return "applied"
    if seen and below < RAW_NOISE and dark >= MIN_EVIDENCE:
        return "raw"
    return "undetermined"


@dataclass(frozen=True)
class OffsetDecision:
    offset_dn: int               # added to every DN before scaling
    metadata_applied: bool       # what the item says
    verdict: Verdict             # what the data says
    contradiction: bool          # the data overrode the metadata

    def reflectance(self, dn: np.ndarray) -> np.ndarray:
        return (dn.astype(np.float64) + self.offset_dn) * DN_SCALE


def decide_offset(properties: Mapping[str, Any], samples: Iterable[np.ndarray],
                  acquired_at: datetime | None = None) -> OffsetDecision:
    """The DN offset of one item, from its baseline and flag, checked against its data.

    Without a stated baseline the data decide (ESA reprocessed older acquisitions with the
    offset, so the date alone cannot); only a scene too bright to tell falls back on the date."""
    baseline = processing_baseline(properties)
    flagged = bool(properties.get("earthsearch:boa_offset_applied", False))
    verdict = data_verdict(samples)
    if baseline is not None and baseline < OFFSET_BASELINE:
        return OffsetDecision(0, False, verdict, False)
    if baseline is None and verdict == "undetermined" and (
            acquired_at is None or acquired_at < OFFSET_SINCE):
        return OffsetDecision(0, flagged, verdict, False)
    applied = flagged if verdict == "undetermined" else verdict == "applied"
    # a contradiction needs a claim: a stated baseline with its flag
    return OffsetDecision(0 if applied else OFFSET_DN, flagged, verdict,
                          baseline is not None and applied != flagged)
