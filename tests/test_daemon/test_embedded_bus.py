"""The embedded bus: a durable log in the store whose offsets never go back."""

from eowatch.daemon.bus.base import OutMessage
from eowatch.daemon.bus.embedded import EmbeddedBus, committed_offsets
from eowatch.daemon.store.store import Store


def messages(*values: bytes) -> list[OutMessage]:
    return [OutMessage(b"0", v) for v in values]


def test_offsets_keep_growing_after_the_log_is_pruned(store_url):
    store = Store(store_url)
    store.migrate()
    bus = EmbeddedBus(store)
    reader = bus.consumer("g", ["obs"], 100)
    bus.publish("obs", messages(b"a", b"b", b"c"))
    assert [r.offset for r in reader.poll(100, 0)] == [0, 1, 2]
    with store.transaction() as conn:
        store.save_offsets(conn, "g", {("obs", 0): 3})
    bus.prune(committed_offsets(store))  # the consumer is caught up: a feed pauses
    bus.publish("obs", messages(b"d"))
    assert reader.lag() == 1
    assert [(r.offset, r.value) for r in reader.poll(100, 0)] == [(3, b"d")]
    # a restarted consumer resumes from its stored offset and reads nothing twice
    restarted = EmbeddedBus(store).consumer("g", ["obs"], 100)
    assert [r.value for r in restarted.poll(100, 0)] == [b"d"]


def test_prune_drops_what_every_group_has_read(store_url):
    store = Store(store_url)
    store.migrate()
    bus = EmbeddedBus(store, keep_output_messages=2)
    bus.publish("obs", messages(*[bytes([i]) for i in range(10)]))
    bus.publish("out", messages(*[bytes([i]) for i in range(10)]))
    with store.transaction() as conn:
        store.save_offsets(conn, "g", {("obs", 0): 6})
    removed = bus.prune(committed_offsets(store))
    assert removed == 6 + 8  # obs: below 6; out: all but the newest 2
    reader = bus.consumer("h", ["obs"], 100)
    reader.seek({("obs", 0): 6})
    assert [r.offset for r in reader.poll(100, 0)] == [6, 7, 8, 9]
