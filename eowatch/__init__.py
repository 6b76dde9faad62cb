"""eowatch: near-real-time Earth-observation monitoring."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eowatch")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

