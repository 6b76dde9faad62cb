"""The sun's zenith angle at a place and time: the weather-satellite feeds publish it with each
cell, and the flood model reads no reflectance from a low sun.

NOAA's general solar position equations (NOAA Global Monitoring Laboratory, "General Solar
Position Calculations"): a Fourier fit of the equation of time and the declination in the
fractional year, good to about 0.1° for these uses (no refraction: it matters only within a
degree of the horizon, where nothing is read anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np


def solar_zenith(lon: np.ndarray | float, lat: np.ndarray | float, when: datetime
                 ) -> np.ndarray:
    """Solar zenith angle in degrees at ``lon``, ``lat`` (degrees) at ``when`` (aware)."""
    when = when.astimezone(UTC)
    start = datetime(when.year, 1, 1, tzinfo=UTC)
    year_days = (datetime(when.year + 1, 1, 1, tzinfo=UTC) - start).days
    hour = when.hour + when.minute / 60 + when.second / 3600
    gamma = 2 * np.pi / year_days * ((when - start).days + (hour - 12) / 24)
    eqtime = 229.18 * (0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
                       - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma))
    decl = (0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma)
            - 0.006758 * np.cos(2 * gamma) + 0.000907 * np.sin(2 * gamma)
            - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma))
    true_solar_minutes = hour * 60 + eqtime + 4 * np.asarray(lon, np.float64)
    hour_angle = np.radians(true_solar_minutes / 4 - 180)
    phi = np.radians(np.asarray(lat, np.float64))
    cos_zenith = (np.sin(phi) * np.sin(decl)
                  + np.cos(phi) * np.cos(decl) * np.cos(hour_angle))
    return np.degrees(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))


def earth_sun_distance(when: datetime) -> float:
    """The Earth–Sun distance in astronomical units at ``when`` (the Astronomical Almanac's
    low-precision formula in the Sun's mean anomaly: good to about 1e-4 AU)."""
    days = (when.astimezone(UTC) - datetime(2000, 1, 1, 12, tzinfo=UTC)).total_seconds() / 86400
    g = np.radians(357.529 + 0.98560028 * days)
    return float(1.00014 - 0.01671 * np.cos(g) - 0.00014 * np.cos(2 * g))
