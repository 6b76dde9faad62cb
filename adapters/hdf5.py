"""Opening an HDF5 (netCDF-4) product, local or over HTTP(S): over HTTP, h5py reads through
fsspec's range-request file, so only the chunks a window needs are fetched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def open_hdf5(href: str, block_size: int, error: type[Exception]) -> Iterator[Any]:
    """The open h5py.File of ``href``; what cannot be opened or read raises ``error``."""
    import h5py

    if href.startswith(("http://", "https://")):
        import fsspec

        try:
            remote = fsspec.open(href, "rb", block_size=block_size).open()
        except (OSError, ValueError) as exc:
            raise error(f"{href}: cannot open ({exc.__class__.__name__}: {exc})") from None
        try:
            with h5py.File(remote, "r") as handle:
                yield handle
        except OSError as exc:
            raise error(f"{href}: not a readable HDF5 file ({exc})") from None
        finally:
            remote.close()
        return
    try:
        with h5py.File(href, "r") as handle:
            yield handle
    except OSError as exc:
        raise error(f"{href}: not a readable HDF5 file ({exc})") from None
