"""HTTP for the feeds that list their own sources (buckets, APIs): one session with retries on
429 and 5xx, and listings fetched whole."""

from __future__ import annotations

import requests
from urllib3 import Retry

from .item_feed import ListingError


def retrying_session() -> requests.Session:
    session = requests.Session()
    retry = Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504))
    adapter = requests.adapters.HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(session: requests.Session, url: str, timeout: float) -> bytes:
    """The body of ``url``; a failure is a ListingError (the poll fails, counted, and the
    cursor stays)."""
    try:
        response = session.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ListingError(f"listing {url}: {exc}") from None
    return response.content
