"""Webhook subscriptions: tokens, refused targets, signed deliveries that lose nothing.

Every receiver is on 127.0.0.1 and allow-listed; refused targets are asserted refused without
any connection being tried (the socket layer is watched)."""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from eowatch.daemon.api import create_app
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.store.store import Store
from eowatch.daemon.webhooks.delivery import SCHEDULE_S, DeliveryWorker
from eowatch.daemon.webhooks.sending import headers
from eowatch.daemon.webhooks.targets import TargetRefused, check, parse_networks
from eowatch.daemon.webhooks.tokens import new_token, token_hash
from eowatch.models.artifact import load_artifact
from eowatch.settings import DEFAULT_MODEL
from tests.data.webhooks import Receiver

LOOPBACK = parse_networks(["127.0.0.0/8"])


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'hooks.db'}")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def no_outside_traffic(monkeypatch):
    """Fail the test on any connection to an address outside loopback."""
    real = socket.socket.connect

    def connect(self, address):  # noqa: ANN001, ANN202
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1",)) \
                and self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"a connection to {address} was tried")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def token(store: Store, scope: str) -> str:
    value = new_token()
    store.create_token(scope, scope, token_hash(value))
    return value


def client(store: Store, read_open: bool = True, resolve=None, allowed=LOOPBACK
           ) -> TestClient:
    meta = load_artifact(DEFAULT_MODEL).metadata
    kwargs = {"resolve": resolve} if resolve else {}
    return TestClient(create_app(store, EmbeddedBus(store), Metrics(), meta, "sha", read_open,
                                 allowed, **kwargs))


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def subscribe(api: TestClient, write: str, url: str, **fields) -> dict:
    answer = api.post("/subscriptions", headers=auth(write),
                      json={"url": url, "kinds": ["crop.decision", "flood.opened",
                                                  "flood.updated", "flood.closed",
                                                  "webhook.test"], **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


# -- targets ---------------------------------------------------------------------------------

HOSTS = {"private.example": ["192.168.7.7"], "public.example": ["198.51.100.7", "10.0.0.8"]}


def hosts(host: str, port: int) -> list[str]:
    """A hosts file: names an operator (or an attacker's DNS) points inward."""
    if host in HOSTS:
        return HOSTS[host]
    from eowatch.daemon.webhooks.targets import system_resolver

    return system_resolver(host, port)


REFUSED = [
    ("http://10.0.0.1/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://127.0.0.1/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"),
    ("http://[fd12:3456::1]/hook", "private"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://224.0.0.251/hook", "multicast"),
    ("http://localhost:9/hook", "loopback"),              # through the system resolver
    ("http://private.example/hook", "private"),           # through a hosts entry
    ("http://public.example/hook", "private"),            # one of its addresses is inside
    ("file:///etc/passwd", "only http and https"),
    ("ftp://public.example/x", "only http and https"),
    ("http://user:pass@public.example/hook", "credentials"),
]


@pytest.mark.parametrize("url, reason", REFUSED)
def test_targets_are_refused_with_their_reason_before_any_connection(
        url, reason, store, no_outside_traffic):
    with pytest.raises(TargetRefused, match=reason):
        check(url, (), hosts)
    api = client(store, resolve=hosts, allowed=())   # no allow-list here
    answer = api.post("/subscriptions", headers=auth(token(store, "write")),
                      json={"url": url, "kinds": ["flood.opened"]})
    assert answer.status_code == 422 and reason in answer.json()["detail"]


def test_an_allow_list_lets_an_internal_receiver_through():
    assert check("http://127.0.0.1:8/x", LOOPBACK).address == "127.0.0.1"
    target = check("http://10.20.3.4:8443/in?x=1", parse_networks(["10.20.0.0/16"]))
    assert (target.address, target.port, target.path) == ("10.20.3.4", 8443, "/in?x=1")


def test_a_name_repointed_inward_after_subscribing_is_refused_at_delivery(
        store, receiver, no_outside_traffic):
    """DNS changes: the target is checked again at every attempt, and the attempt connects
    to the address that was checked."""
    answers = {"hooks.example": ["127.0.0.1"]}
    api = client(store, resolve=lambda h, p: answers[h])
    url = receiver.url.replace("127.0.0.1", "hooks.example")
    sub = subscribe(api, token(store, "write"), url)
    api.post(f"/subscriptions/{sub['id']}/test", headers=auth(token(store, "write")))
    answers["hooks.example"] = ["169.254.169.254"]
    metrics = Metrics()
    worker = DeliveryWorker(store, metrics, LOOPBACK, resolve=lambda h, p: answers[h])
    assert worker.run_once() == 1
    assert receiver.received == []
    assert metrics.registry.get_sample_value("eowatch_webhook_attempts_total",
                                             {"result": "refused"}) == 1
    answers["hooks.example"] = ["127.0.0.1"]   # back: the retry reaches the receiver
    worker.clock = lambda: datetime.now(UTC).timestamp() + 60
    receiver.secrets = [sub["secret"]]
    worker.run_once()
    assert len(receiver.accepted) == 1
    assert receiver.received[0].headers["host"] == url.split("/")[2]   # the name, not the IP


# -- tokens ----------------------------------------------------------------------------------

WRITES = [("post", "/subscriptions"), ("patch", "/subscriptions/{id}"),
          ("delete", "/subscriptions/{id}"), ("post", "/subscriptions/{id}/secret"),
          ("post", "/subscriptions/{id}/test"),
          ("post", "/subscriptions/{id}/replay?since=2026-01-01T00:00:00Z")]


def test_every_write_needs_a_write_token_and_subscriptions_a_token_to_read(store, receiver):
    api = client(store)
    write, read = token(store, "write"), token(store, "read")
    revoked = token(store, "write")
    revoked_id = [t["id"] for t in store.list_tokens()][-1]
    assert store.revoke_token(revoked_id)
    sub = subscribe(api, write, receiver.url)
    body = {"url": receiver.url, "kinds": ["flood.opened"]}
    for method, path in WRITES:
        path = path.format(id=sub["id"])
        call = getattr(api, method)
        extra = {"json": body} if method in ("post", "patch") else {}
        assert call(path, **extra).status_code == 401, path
        assert call(path, headers=auth(read), **extra).status_code == 403, path
        assert call(path, headers=auth(revoked), **extra).status_code == 401, path
        assert call(path, headers=auth("eow_forged"), **extra).status_code == 401, path
    for path in ("/subscriptions", f"/subscriptions/{sub['id']}",
                 f"/subscriptions/{sub['id']}/deliveries"):
        assert api.get(path).status_code == 401
        assert api.get(path, headers=auth(read)).status_code == 200
    assert "secrets" not in api.get("/subscriptions", headers=auth(read)).json()["items"][0]
    admin = token(store, "admin")   # admin can do what write can
    assert api.patch(f"/subscriptions/{sub['id']}", headers=auth(admin),
                     json={"description": "desk"}).json()["description"] == "desk"


def test_reading_is_open_or_closed_by_the_setting(store):
    assert client(store).get("/decisions").status_code == 200
    closed = client(store, read_open=False)
    assert closed.get("/decisions").status_code == 401
    assert closed.get("/alerts", headers=auth(token(store, "read"))).status_code == 200
    assert closed.get("/healthz").status_code == 200   # probes stay open


def test_the_tokens_command_prints_a_token_once_and_keeps_its_hash(tmp_path, capsys):
    from eowatch.cli import main

    settings = ["--config", str(tmp_path / "none.toml")]
    (tmp_path / "none.toml").write_text(f'data_dir = "{tmp_path}"\n')
    assert main(["tokens", "create", "--scope", "write", "--name", "desk", *settings]) == 0
    printed = capsys.readouterr().out.split()[-1]
    store = Store(f"sqlite:///{tmp_path / 'eowatch.db'}")
    found = store.token_by_hash(token_hash(printed))
    assert found is not None and found["scope"] == "write"
    assert printed not in (tmp_path / "eowatch.db").read_bytes().decode(errors="ignore")
    assert main(["tokens", "revoke", found["id"], *settings]) == 0
    assert store.token_by_hash(token_hash(printed))["revoked_at"] is not None


# -- deliveries ------------------------------------------------------------------------------

class Clock:
    """The worker's clock, moved by the test (it starts now: deliveries are due from now)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def enqueue(api: TestClient, write: str, sub: dict, n: int) -> None:
    for _ in range(n):
        assert api.post(f"/subscriptions/{sub['id']}/test", headers=auth(write)
                        ).status_code == 202


def test_signatures_verify_and_tampering_fails(store, receiver):
    api = client(store)
    write = token(store, "write")
    sub = subscribe(api, write, receiver.url)
    receiver.secrets = [sub["secret"]]
    enqueue(api, write, sub, 3)
    DeliveryWorker(store, Metrics(), LOOPBACK).run_once()
    assert len(receiver.accepted) == 3 and all(r.verified is None for r in receiver.received)
    sample = receiver.received[0]
    verifier = Webhook(sub["secret"])
    with pytest.raises(WebhookVerificationError):
        verifier.verify(sample.body.replace(b"webhook.test", b"webhook.tEst"), sample.headers)
    with pytest.raises(WebhookVerificationError, match="too old"):
        old = datetime.now(UTC) - timedelta(minutes=10)
        verifier.verify(sample.body, headers([sub["secret"]], sample.webhook_id,
                                             sample.body.decode(), old))
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(sample.body, sample.headers)


def test_a_rotated_secret_signs_beside_the_new_one_during_the_overlap(store, receiver):
    api = client(store)
    write = token(store, "write")
    sub = subscribe(api, write, receiver.url)
    rotated = api.post(f"/subscriptions/{sub['id']}/secret?overlap_hours=1",
                       headers=auth(write)).json()
    enqueue(api, write, sub, 1)
    DeliveryWorker(store, Metrics(), LOOPBACK).run_once()
    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (sub["secret"], rotated["secret"]):
        Webhook(secret).verify(got.body, got.headers)   # either verifies


def test_a_day_long_outage_delivers_everything_once_after_recovery(store, receiver):
    """The receiver answers 500 for a day (the worker's clock injected, the schedule real):
    every event arrives after it recovers, once per webhook-id."""
    api = client(store)
    write = token(store, "write")
    sub = subscribe(api, write, receiver.url)
    receiver.secrets = [sub["secret"]]
    clock = Clock()
    start = clock.now
    recovered = start + 24 * 3600
    receiver.answer = lambda r: (204, {}) if clock.now >= recovered else (500, {})
    enqueue(api, write, sub, 20)
    worker = DeliveryWorker(store, Metrics(), LOOPBACK, clock=clock, rng=random.Random(1))
    for _ in range(200):
        worker.run_once()
        pending, _ = store.delivery_backlog()
        if not pending:
            break
        due = min(d["next_attempt_at"] for d in store.list_deliveries(sub["id"], 100, 0).items
                  if d["status"] == "pending")
        clock.now = max(clock.now, due.timestamp()) + 0.001
    assert store.delivery_backlog()[0] == 0
    assert set(receiver.acknowledgements().values()) == {1}   # each id accepted once
    assert len(receiver.accepted) == 20
    delivery = store.list_deliveries(sub["id"], 1, 0).items[0]
    times = [a["at"].timestamp() for a in delivery["attempt_log"]]
    waits = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(waits) >= 7   # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h: a day and a half
    for wait, planned in zip(waits, SCHEDULE_S, strict=False):
        assert planned * 0.89 <= wait <= planned * 1.11 + 1
    assert times[-1] >= recovered and delivery["status"] == "delivered"
    assert api.get(f"/subscriptions/{sub['id']}", headers=auth(write)).json()["enabled"]


def test_gone_disables_a_subscription_and_retry_after_is_honoured(store, receiver):
    api = client(store)
    write = token(store, "write")
    sub = subscribe(api, write, receiver.url)
    receiver.answer = lambda r: (429, {"Retry-After": "3600"})
    enqueue(api, write, sub, 1)
    clock = Clock()
    worker = DeliveryWorker(store, Metrics(), LOOPBACK, clock=clock)
    worker.run_once()
    (pending,) = store.list_deliveries(sub["id"], 10, 0).items
    assert pending["next_attempt_at"].timestamp() - clock.now >= 3600   # not 5 s
    receiver.answer = lambda r: (410, {})
    clock.now += 3601
    worker.run_once()
    shown = api.get(f"/subscriptions/{sub['id']}", headers=auth(write)).json()
    assert not shown["enabled"] and "410" in shown["disabled_reason"]
    clock.now += 10 ** 6
    assert worker.run_once() == 0          # nothing is sent to a disabled subscription
    api.patch(f"/subscriptions/{sub['id']}", headers=auth(write), json={"enabled": True})
    receiver.answer = lambda r: (200, {})
    assert worker.run_once() == 1 and len(receiver.acknowledgements()) == 1  # kept, not lost


def test_a_redirect_is_a_failure_and_is_not_followed(store, receiver):
    api = client(store)
    write = token(store, "write")
    sub = subscribe(api, write, receiver.url)
    receiver.answer = lambda r: (302, {"Location": "http://169.254.169.254/"}) \
        if r.path == "/hook" else (200, {})
    enqueue(api, write, sub, 1)
    DeliveryWorker(store, Metrics(), LOOPBACK).run_once()
    assert [r.path for r in receiver.received] == ["/hook"]
    (delivery,) = store.list_deliveries(sub["id"], 10, 0).items
    assert delivery["status"] == "pending" and delivery["last_status"] == 302


def test_replay_sends_again_with_the_same_ids(store, receiver):
    api = client(store)
    write = token(store, "write")
    sub = subscribe(api, write, receiver.url)
    enqueue(api, write, sub, 2)
    worker = DeliveryWorker(store, Metrics(), LOOPBACK)
    worker.run_once()
    first = [r.webhook_id for r in receiver.received]
    answer = api.post(f"/subscriptions/{sub['id']}/replay",
                      params={"since": "2026-01-01T00:00:00Z"}, headers=auth(write))
    assert answer.json() == {"replayed": 2}
    worker.run_once()
    assert sorted(r.webhook_id for r in receiver.received) == sorted(first * 2)


def test_decisions_and_alerts_reach_their_subscribers_once(tmp_path, unique, receiver):
    """The daemon: deliveries are written by the checkpoint that stores their events, matched
    by kind, place and filters; the worker sends each once, verified."""
    from .pipeline import drain, make_daemon

    daemon = make_daemon(tmp_path, "embedded", unique, feeds=("simulated", "simulated-sentinel1"),
                         webhook_allow_cidrs=("127.0.0.0/8",),
                         feed_settings={"simulated-sentinel1": {"years": 2,
                                                                "days_per_second": 1e6}})
    try:
        api = TestClient(create_app(daemon.store, daemon.bus, daemon.metrics,
                                    daemon.model.metadata, daemon.model.sha256, True, LOOPBACK))
        write = token(daemon.store, "write")
        floods = subscribe(api, write, receiver.url, kinds=["flood.opened", "flood.closed"],
                           areas=["sim-floodplain-0"])
        maize = subscribe(api, write, receiver.url + "?maize", kinds=["crop.decision"],
                          classes=["maize"], min_probability=0.5)
        receiver.secrets = [floods["secret"], maize["secret"]]
        drain(daemon, timeout_s=300)
        while daemon.webhooks.run_once():
            pass
        accepted = receiver.accepted
        kinds = sorted(e["type"] for e in accepted.values())
        assert kinds.count("flood.opened") == 1 and kinds.count("flood.closed") == 1
        assert "flood.updated" not in kinds
        decisions = daemon.store.list_decisions(limit=1000).items
        wanted = {d["decision_id"] for d in decisions
                  if d["class"] == "maize" and d["probabilities"]["maize"] >= 0.5}
        got = {e["data"]["decision_id"] for e in accepted.values() if e["type"] == "crop.decision"}
        assert got == wanted and wanted
        assert set(receiver.acknowledgements().values()) == {1}
        # the deliveries went in with the events: a replay of the stream adds none
        before = daemon.store.delivery_backlog(), len(receiver.received)
        daemon.consumer.consumer.seek({tp: 0 for tp in daemon.consumer.consumer.assignment()})
        drain(daemon, timeout_s=300)
        assert daemon.webhooks.run_once() == 0
        assert (daemon.store.delivery_backlog(), len(receiver.received)) == before
        assert json.loads(json.dumps(accepted))  # plain JSON all through
    finally:
        daemon.shutdown()


def test_kill_9_during_delivery_loses_nothing_and_repeats_carry_the_same_id(tmp_path):
    """`eowatch run` killed while its worker sends: after a restart every decision and alert
    has reached the receiver; an event sent twice came twice with the same webhook-id."""
    import urllib.request

    from ..conftest import free_port
    from .test_service import PARCELS, get, start, stop, wait_for

    store = Store(f"sqlite:///{tmp_path / 'eowatch.db'}")
    store.migrate()
    write = token(store, "write")
    receiver = Receiver(delay_s=0.02)   # slow enough to be killed mid-stream
    env = {"EOWATCH_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}
    try:
        port = free_port()
        process = start(tmp_path, port, **env)
        wait_for(lambda: get(port, "/healthz"), 60, process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/subscriptions", method="POST",
            data=json.dumps({"url": receiver.url, "kinds": ["crop.decision", "flood.opened",
                                                            "flood.updated", "flood.closed"]
                             }).encode(),
            headers={**auth(write), "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            receiver.secrets = [json.loads(answer.read())["secret"]]
        wait_for(lambda: len(receiver.received) >= 20, 120, process)
        process.kill()   # SIGKILL: mid-delivery, leases held, no final checkpoint
        process.wait()
        sent_before = len(receiver.received)
        process = start(tmp_path, port := free_port(), **env)
        try:
            def all_in() -> bool:
                decided = get(port, "/decisions?limit=1")
                alerts = get(port, "/alerts?kind=flood.closed&limit=1")
                if not decided or decided["total"] < PARCELS or not alerts or \
                        not alerts["total"]:
                    return False
                pending, _ = store.delivery_backlog()
                return pending == 0
            wait_for(all_in, 240, process)
        finally:
            stop(process)
    finally:
        receiver.close()
    assert sent_before < len(receiver.received)
    assert all(r.verified is None for r in receiver.received)
    events = {}
    for r in receiver.received:   # one webhook-id per event, whichever life sent it
        data = json.loads(r.body)["data"]
        key = data.get("alert_id") or data["decision_id"]
        assert events.setdefault(key, r.webhook_id) == r.webhook_id
    decisions = {d["decision_id"] for d in store.list_decisions(limit=10_000).items}
    alerts = {a["alert_id"] for a in store.list_alerts(limit=10_000).items}
    assert len(decisions) == PARCELS and alerts
    assert set(events) == decisions | alerts
