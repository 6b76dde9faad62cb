"""ObservationChunk encodings: Arrow IPC (what the bus carries) against numpy buffers in msgpack.

Prints bytes per chunk and encode/decode rates for chunks of 4,000 parcels x 13 bands (the size
one shard of a Sentinel-2 tile brings), so the choice of wire format rests on a measurement.
Usage: python bench/codec.py  (msgpack is only needed for the comparison: pip install msgpack)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from common import print_table
from eowatch.contract.messages import ObservationChunk


def make_chunk(n: int = 4000, bands: int = 13) -> ObservationChunk:
    rng = np.random.default_rng(0)
    return ObservationChunk(
        feed="sentinel2", acquisition_id="S2B_MSIL2A_20260412T105619_N0510_R094_T30UWU",
        acquired_at=datetime(2026, 4, 12, 10, 56, tzinfo=UTC),
        band_names=tuple(f"B{i:02d}" for i in range(bands)), shard=17,
        parcel_ids=np.array([f"FR-2026-{i:09d}" for i in range(n)], dtype=object),
        values=rng.random((n, bands), dtype=np.float32),
        valid_fraction=rng.random(n, dtype=np.float32))


def msgpack_codec():
    import msgpack

    def encode(c: ObservationChunk) -> bytes:
        return msgpack.packb({
            "v": 1, "feed": c.feed, "acq": c.acquisition_id, "t": c.acquired_at.isoformat(),
            "bands": list(c.band_names), "shard": c.shard,
            "ids": "\x1f".join(c.parcel_ids).encode(), "values": c.values.tobytes(),
            "valid": c.valid_fraction.tobytes(), "n": len(c.parcel_ids)})

    def decode(payload: bytes) -> ObservationChunk:
        m = msgpack.unpackb(payload)
        n, b = m["n"], len(m["bands"])
        return ObservationChunk(
            feed=m["feed"], acquisition_id=m["acq"], acquired_at=datetime.fromisoformat(m["t"]),
            band_names=tuple(m["bands"]), shard=m["shard"],
            parcel_ids=np.array(m["ids"].decode().split("\x1f"), dtype=object),
            values=np.frombuffer(m["values"], np.float32).reshape(n, b),
            valid_fraction=np.frombuffer(m["valid"], np.float32))

    return encode, decode


def rate(fn, arg, seconds: float = 1.0) -> float:
    fn(arg)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(arg)
        runs += 1
    return runs / (time.perf_counter() - start)


def main() -> None:
    chunk = make_chunk()
    codecs = {"Arrow IPC": (ObservationChunk.encode, ObservationChunk.decode)}
    try:
        codecs["msgpack + numpy buffers"] = msgpack_codec()
    except ImportError:
        print("msgpack not installed: Arrow only")
    rows = []
    for name, (encode, decode) in codecs.items():
        payload = encode(chunk)
        back = decode(payload)
        assert np.array_equal(back.values, chunk.values)
        assert back.parcel_ids.tolist() == chunk.parcel_ids.tolist()
        enc, dec = rate(encode, chunk), rate(decode, payload)
        n = len(chunk.parcel_ids)
        rows.append([name, len(payload), f"{enc:,.0f}", f"{dec:,.0f}",
                     f"{dec * n / 1e6:.1f}"])
    print(f"chunk: {len(chunk.parcel_ids)} parcels x {len(chunk.band_names)} bands, "
          "float32 values, string ids")
    print_table(["codec", "bytes", "encodes/s", "decodes/s", "M parcel-obs/s decoded"], rows)


if __name__ == "__main__":
    main()
