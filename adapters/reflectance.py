"""Sentinel-2 digital numbers to reflectance: (DN + offset) / 10000.

Since processing baseline 04.00 (25 January 2022) ESA adds 1000 to every DN so that dark
pixels can carry negative reflectance; the product states it as BOA_ADD_OFFSET (L2A) or
RADIO_ADD_OFFSET (L1C) = -1000. Older baselines have no offset. Some archives (Earth Search's
COGs) subtract it already and say so in ``earthsearch:boa_offset_applied``, while their
``raster:bands`` still announce ``offset: -0.1``; and that flag is itself wrong for some items.

So the offset is decided from the baseline, with the flag saying whether it is already applied,
and then checked against the data, which can tell the two cases apart where it is dark enough:

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

OFFSET_BASELINE = (4, 0)       # first processing baseline with the +1000 DN offset
OFFSET_DN = -1000
DN_SCALE = 1e-4
MIN_EVIDENCE = 0.01            # share of valid pixels the data test needs on either side
RAW_NOISE = 0.001              # raw data may hold a few negative-reflectance pixels
DARK_BAND = 1000 + 100         # raw DNs in [1000, 1100): reflectance 0 to 0.01

Verdict = Literal["applied", "raw", "undetermined"]


def processing_baseline(properties: Mapping[str, Any]) -> tuple[int, int] | None:
    """(major, minor) of ``s2:processing_baseline`` ("05.09"), or None when absent."""
    text = properties.get("s2:processing_baseline")
    if not text:
        return None
    try:
        major, minor = (int(p) for p in str(text).split("."))
    except ValueError:
        return None
    return major, minor


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


def decide_offset(properties: Mapping[str, Any], samples: Iterable[np.ndarray]) -> OffsetDecision:
    """The DN offset of one item, from its baseline and flag, checked against its data."""
    baseline = processing_baseline(properties)
    if baseline is None or baseline < OFFSET_BASELINE:
        return OffsetDecision(0, False, "undetermined", False)
    flagged = bool(properties.get("earthsearch:boa_offset_applied", False))
    verdict = data_verdict(samples)
    applied = flagged if verdict == "undetermined" else verdict == "applied"
    return OffsetDecision(0 if applied else OFFSET_DN, flagged, verdict, applied != flagged)
