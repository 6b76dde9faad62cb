"""What each STAC API does its own way, in one place: a source profile per API.

The metadata look-ups (projection, band assets, processing baseline) try every place any of
these APIs writes them, so they need no profile; what differs in kind is how assets are reached:

- ``earth-search`` (Element 84, v1 and the older layout): public COGs over HTTPS; nothing to do.
- ``cdse`` (Copernicus Data Space): JPEG 2000 on ``s3://eodata``, read through CDSE's own S3
  endpoint with path-style addressing and the user's S3 keys.
- ``planetary-computer`` (Microsoft): COGs in Azure Blob Storage whose hrefs need a SAS token
  from its anonymous token endpoint; the ``planetary-computer`` package signs the items.
- ``generic``: any other STAC API, read as given (``s3://`` with the usual AWS settings).

``auto`` picks the profile from the API's host name. Sentinel-1 and later feeds use the same
profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pystac
from rasterio.session import Session

from eowatch.errors import EowatchError

SOURCES = ("earth-search", "cdse", "planetary-computer", "generic")
HOSTS = {"earth-search.aws.element84.com": "earth-search",
         "stac.dataspace.copernicus.eu": "cdse",
         "catalogue.dataspace.copernicus.eu": "cdse",
         "planetarycomputer.microsoft.com": "planetary-computer"}
CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"


class SourceError(EowatchError, ValueError):
    """A source profile that cannot work as configured."""


@dataclass(frozen=True)
class S3Access:
    """An S3 endpoint and its keys (the keys are never logged)."""

    endpoint: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    https: bool = True
    path_style: bool = False

    def gdal_options(self) -> dict[str, str]:
        options = {"AWS_HTTPS": "YES" if self.https else "NO",
                   "AWS_VIRTUAL_HOSTING": "FALSE" if self.path_style else "TRUE"}
        if self.endpoint:
            options["AWS_S3_ENDPOINT"] = self.endpoint
        if not (self.access_key and self.secret_key):
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        return options

    def session(self) -> Session | None:
        """The keys as rasterio takes them (a boto3-backed session), or None without keys."""
        if not (self.access_key and self.secret_key):
            return None
        from rasterio.session import AWSSession

        return AWSSession(aws_access_key_id=self.access_key,
                          aws_secret_access_key=self.secret_key, endpoint_url=self.endpoint,
                          region_name="us-east-1")  # S3-compatible endpoints ignore it


@dataclass(frozen=True)
class Source:
    """How one STAC API's assets are reached: ``sign`` prepares an item's hrefs, and the GDAL
    options apply while its rasters are read."""

    name: str
    gdal_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    sign: Callable[[pystac.Item], pystac.Item] = lambda item: item
    session: Session | None = field(default=None, repr=False)  # S3 credentials


def detect(stac_url: str) -> str:
    """The profile of an API, from its host name; ``generic`` for hosts not known here."""
    return HOSTS.get(urlparse(stac_url).hostname or "", "generic")


def planetary_computer_signer(sas_url: str | None, subscription_key: str | None
                              ) -> Callable[[pystac.Item], pystac.Item]:
    """Signs an item's Azure Blob hrefs with a SAS token (cached until it nears expiry)."""
    import planetary_computer
    from planetary_computer.settings import Settings

    settings = Settings.get()  # the package's process-wide settings, as its setters do
    if sas_url:
        settings.sas_url = sas_url
    if subscription_key:
        settings.subscription_key = subscription_key

    def sign(item: pystac.Item) -> pystac.Item:
        signed: pystac.Item = planetary_computer.sign(item)
        return signed

    return sign


def source_profile(name: str, stac_url: str, s3: S3Access = S3Access(),
           sas_url: str | None = None, subscription_key: str | None = None) -> Source:
    """The profile ``name`` (``auto``: detected from ``stac_url``), configured."""
    if name == "auto":
        name = detect(stac_url)
    if name not in SOURCES:
        raise SourceError(f"unknown STAC source {name!r}; use auto or one of "
                          f"{', '.join(SOURCES)}")
    if name == "cdse":
        if not (s3.access_key and s3.secret_key):
            raise SourceError("the Copernicus Data Space serves its assets on S3 to registered "
                              "users only: set EOWATCH_S2_S3_ACCESS_KEY and "
                              "EOWATCH_S2_S3_SECRET_KEY (the S3 keys from "
                              "https://eodata-s3keysmanager.dataspace.copernicus.eu)")
        s3 = S3Access(s3.endpoint or CDSE_S3_ENDPOINT, s3.access_key, s3.secret_key, s3.https,
                      path_style=True)
        return Source(name, s3.gdal_options(), session=s3.session())
    if name == "planetary-computer":
        return Source(name, {}, planetary_computer_signer(sas_url, subscription_key))
    if s3.endpoint or s3.access_key:
        return Source(name, s3.gdal_options(), session=s3.session())
    return Source(name)
