"""Webhook delivery speed, and what the outbox costs a checkpoint.

    python bench/webhooks.py [--deliveries 2000] [--decisions 20000]

1. Deliveries per second to a local receiver (answering 204) through the delivery worker:
   claim from the store, sign (standardwebhooks), check the target, POST, record the attempt;
   against the ceiling of a bare HTTP-client loop POSTing the same bodies to the same receiver
   with as many threads, in the same run.
2. A checkpoint's store transaction for --decisions decisions: without subscriptions, and with
   1 and 10 subscriptions that each want every decision (the outbox rows matched and written in
   the same transaction): seconds per 1,000 decisions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import urllib3

from common import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eowatch.contract.messages import Decision, decision_id  # noqa: E402
from eowatch.daemon.consuming import decision_row  # noqa: E402
from eowatch.daemon.metrics import Metrics  # noqa: E402
from eowatch.daemon.store.store import Store  # noqa: E402
from eowatch.daemon.webhooks.delivery import DeliveryWorker  # noqa: E402
from eowatch.daemon.webhooks.matching import SubscriptionIndex, outbox_row  # noqa: E402
from eowatch.daemon.webhooks.targets import parse_networks  # noqa: E402
from eowatch.daemon.webhooks.tokens import new_secret  # noqa: E402
from tests.data.webhooks import Receiver  # noqa: E402

THREADS = 8


def subscription(store: Store, url: str, kinds: list[str]) -> str:
    now = datetime.now(UTC)
    sid = uuid.uuid4().hex
    store.create_subscription({"id": sid, "url": url, "kinds": kinds, "description": "",
                               "secrets": [{"secret": new_secret(), "until": None}],
                               "created_at": now, "updated_at": now})
    return sid


def delivery_speed(n: int) -> tuple[float, float]:
    """(worker deliveries/s, bare loop POSTs/s) to one local receiver."""
    receiver = Receiver(secrets=[])
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        store.migrate()
        sid = subscription(store, receiver.url, ["webhook.test"])
        now = datetime.now(UTC)
        body = json.dumps({"type": "webhook.test", "timestamp": now.isoformat(),
                           "data": {"n": 0, "pad": "x" * 600}})
        with store.transaction() as conn:
            store.insert_deliveries(conn, [outbox_row(sid, "webhook.test", f"e{i}", body, now)
                                           for i in range(n)])
        worker = DeliveryWorker(store, Metrics(), parse_networks(["127.0.0.0/8"]),
                                threads=THREADS, batch=256)
        started = time.perf_counter()
        while worker.run_once():
            pass
        worker_rate = n / (time.perf_counter() - started)
        worker.close()
        store.close()
    pool = urllib3.PoolManager(maxsize=THREADS)

    def one(_: int) -> int:
        return pool.request("POST", receiver.url, body=body.encode(), retries=False).status

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as executor:
        assert set(executor.map(one, range(n))) == {204}
    bare_rate = n / (time.perf_counter() - started)
    receiver.close()
    return worker_rate, bare_rate


def decision_rows(n: int) -> list[dict]:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    return [decision_row(Decision(decision_id(f"p{i}", 2026, "m"), f"p{i}", 2026, "simulated",
                                  "m", "maize", {"maize": 0.9, "wheat": 0.1}, 0.7, 150.0,
                                  at + timedelta(seconds=i), "A", 12, False, shard=i % 64))
            for i in range(n)]


def checkpoint_cost(n: int, subscriptions: int) -> float:
    """Seconds per 1,000 decisions of one checkpoint transaction (match and write)."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        store.migrate()
        for _ in range(subscriptions):
            subscription(store, "https://hooks.example.org/x", ["crop.decision"])
        index = SubscriptionIndex(store)
        rows = decision_rows(n)
        started = time.perf_counter()
        deliveries = index.deliveries(rows, [])
        with store.transaction() as conn:
            store.insert_decisions(conn, rows)
            store.insert_deliveries(conn, deliveries)
        seconds = time.perf_counter() - started
        assert len(deliveries) == n * subscriptions
        store.close()
    return seconds * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=20000)
    args = parser.parse_args()
    worker, bare = delivery_speed(args.deliveries)
    print_table(["measure", "per second"], [
        [f"delivery worker ({THREADS} threads): claim, sign, check, POST, record",
         f"{worker:,.0f}"],
        [f"bare HTTP-client loop ({THREADS} threads), same receiver", f"{bare:,.0f}"],
        ["worker / bare loop", f"{worker / bare:.2f}"]])
    print()
    base = checkpoint_cost(args.decisions, 0)
    rows = [["no subscription", f"{base * 1000:.1f}", "1.00"]]
    for count in (1, 10):
        cost = checkpoint_cost(args.decisions, count)
        rows.append([f"{count} subscription(s) wanting every decision", f"{cost * 1000:.1f}",
                     f"{cost / base:.2f}"])
    print_table(["checkpoint of decisions", "ms per 1,000 decisions", "against none"], rows)


if __name__ == "__main__":
    main()
