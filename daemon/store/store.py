"""The store: SQLite (embedded) or PostgreSQL, one interface, migrations by Alembic.

Writes that must happen together (state rows, decisions, dead letters and source offsets; or
bus messages and a feed cursor) take a Connection from ``transaction()`` and commit as one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eowatch.cells import COARSE
from eowatch.errors import EowatchError

from .tables import (
    ALERTS,
    AREAS,
    CELLS,
    CONSUMER_OFFSETS,
    DEAD_LETTERS,
    DECISIONS,
    DEPLOYMENT,
    FEED_CURSORS,
    OBSERVATION_LOG,
    PARCELS,
    SHARD_OWNERS,
    TARGET_STATE,
    table_of,
    utcnow,
)
from .webhooks import WebhookStore

if TYPE_CHECKING:
    from ..observation_log import LogTake, Series

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(EowatchError, RuntimeError):
    """The store cannot be reached or migrated."""


def create_store_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")   # readers never block the writer
            cursor.execute("PRAGMA synchronous=FULL")   # a committed checkpoint survives kill -9
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _upsert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]],
            keys: Sequence[str], update: bool) -> None:
    """Insert rows; on a key conflict update the other columns (or leave the row as it is)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    if update:
        columns = {c: statement.excluded[c] for c in rows[0] if c not in keys}
        statement = statement.on_conflict_do_update(index_elements=list(keys), set_=columns)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(statement, list(rows))


def decision_view(row: Any) -> dict[str, Any]:
    """A stored decision with the message contract's field names (``class``, parsed
    probabilities)."""
    view = dict(row)
    view["class"] = view.pop("crop")
    view["probabilities"] = json.loads(view["probabilities"])
    return view


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int


class Store(WebhookStore):
    """Typed access to the tables; every method is safe to call from any thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_store_engine(url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the latest migration (never drops data)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection_url"] = self.url
        try:
            with self.engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except sa.exc.OperationalError as exc:
            raise StoreError(f"store {self.engine.url.render_as_string(hide_password=True)} "
                             f"unreachable ({exc.orig}); check EOWATCH_STORE_URL and that the "
                             "database is running") from None

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # parcels and areas
    def upsert_parcels(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace parcels (id, shard, and optionally geometry, label, season_start,
        source)."""
        defaults = {"geometry": None, "label": None, "season_start": None, "source": "",
                    "created_at": utcnow()}
        with self.transaction() as conn:
            _upsert(conn, PARCELS, [{**defaults, **r} for r in rows], ["id"],
                    update=True)

    def upsert_areas(self, rows: Sequence[dict[str, Any]]) -> None:
        defaults = {"name": "", "source": "", "optical": False, "created_at": utcnow()}
        with self.transaction() as conn:
            _upsert(conn, AREAS, [{**defaults, **r} for r in rows], ["id"],
                    update=True)

    def replace_cells(self, area_id: str, grid: dict[str, Any],
                      rows: Sequence[dict[str, Any]]) -> None:
        """An area's grid and cells, replacing those of an earlier import, in one transaction."""
        with self.transaction() as conn:
            conn.execute(AREAS.update().where(AREAS.c.id == area_id)
                         .values(grid=json.dumps(grid)))
            conn.execute(CELLS.delete().where(CELLS.c.area_id == area_id))
            for start in range(0, len(rows), 50_000):
                conn.execute(CELLS.insert(), list(rows[start:start + 50_000]))

    def cell_columns(self) -> tuple[list[str], list[int], list[str | None]]:
        """Every cell: (ids, shards, season starts), as parcel_columns (cells have no season
        start of their own: None)."""
        rows = self._fetch_all(sa.select(CELLS.c.id, CELLS.c.shard))
        return [r[0] for r in rows], [r[1] for r in rows], [None] * len(rows)

    def area_cells(self, area_id: str) -> tuple[dict[str, Any] | None, int]:
        """An area's grid definition and its number of cells (of its fine grid)."""
        with self.engine.connect() as conn:
            grid = conn.execute(sa.select(AREAS.c.grid).where(AREAS.c.id == area_id)
                                ).scalar_one_or_none()
            count = conn.execute(sa.select(sa.func.count()).select_from(CELLS)
                                 .where(CELLS.c.area_id == area_id, _fine_cells())
                                 ).scalar_one()
        return (json.loads(grid) if grid else None), int(count)

    def _fetch_all(self, statement: sa.Select) -> list[tuple]:
        """All rows of a query through the driver's fetchall: loading millions of rows one
        Result row at a time would dominate a restart."""
        with self.engine.connect() as conn:
            compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
            return list(conn.exec_driver_sql(str(compiled)).cursor.fetchall())

    def parcel_columns(self) -> tuple[list[str], list[int], list[str | None]]:
        """Every registered parcel: (ids, shards, season starts), in one pass."""
        rows = self._fetch_all(sa.select(PARCELS.c.id, PARCELS.c.shard, PARCELS.c.season_start))
        if not rows:
            return [], [], []
        ids, shards, starts = zip(*rows, strict=True)
        return list(ids), list(shards), list(starts)

    def parcel_geometries(self, exclude_source: str | None = None
                          ) -> tuple[list[str], list[int], list[str]]:
        """(ids, shards, GeoJSON WGS84 geometries) of the parcels that have a geometry, less
        those registered by ``exclude_source``."""
        where: list[sa.ColumnElement[bool]] = [PARCELS.c.geometry.is_not(None)]
        if exclude_source is not None:
            where.append(PARCELS.c.source != exclude_source)
        rows = self._fetch_all(sa.select(PARCELS.c.id, PARCELS.c.shard, PARCELS.c.geometry)
                               .where(*where).order_by(PARCELS.c.id))
        if not rows:
            return [], [], []
        ids, shards, geometries = zip(*rows, strict=True)
        return list(ids), list(shards), list(geometries)

    def parcels_version(self) -> tuple[int, datetime | None]:
        """(count, newest write) of the parcels: changes whenever parcels are added or
        re-imported, so feeds know when to reload geometries."""
        with self.engine.connect() as conn:
            count, newest = conn.execute(sa.select(sa.func.count(),
                                                   sa.func.max(PARCELS.c.created_at))).one()
        return int(count), newest

    def parcel_registry(self) -> dict[str, tuple[int, str | None]]:
        """parcel id -> (shard, season start or None)."""
        ids, shards, starts = self.parcel_columns()
        return dict(zip(ids, zip(shards, starts, strict=True), strict=True))

    def count(self, model: type) -> int:
        """Rows of a table, given its SQLModel class."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table_of(model)))
                       .scalar_one())

    def get_parcel(self, parcel_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(PARCELS).where(
                PARCELS.c.id == parcel_id)).mappings().first()
            return dict(row) if row else None

    def get_cell(self, cell_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(CELLS).where(CELLS.c.id == cell_id)).mappings().first()
            return dict(row) if row else None

    # feed cursors
    def get_cursor(self, feed: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(FEED_CURSORS.c.cursor).where(
                FEED_CURSORS.c.feed == feed)).scalar_one_or_none()
        return None if text is None else json.loads(text)

    @staticmethod
    def set_cursor(conn: Connection, feed: str, cursor: dict[str, Any]) -> None:
        _upsert(conn, FEED_CURSORS, [{"feed": feed, "cursor": json.dumps(cursor),
                                              "updated_at": utcnow()}], ["feed"], update=True)

    # consumer checkpoints: state rows are keyed by the model (sha256 of its artifact)
    def load_states(self, model: str, shards: Iterable[int]
                    ) -> list[tuple[str, int, bytes, str | None]]:
        """(target id, shard, packed state, last acquisition id) of every target of these
        shards under ``model``: the rows ``save_states`` wrote."""
        table = TARGET_STATE
        return self._fetch_all(sa.select(table.c.target_id, table.c.shard, table.c.data,
                                         table.c.acquisition_id)
                               .where(table.c.model == model,
                                      table.c.shard.in_([int(s) for s in shards])))

    def get_state(self, model: str, target_id: str) -> tuple[bytes, str | None] | None:
        table = TARGET_STATE
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table.c.data, table.c.acquisition_id).where(
                table.c.model == model, table.c.target_id == target_id)).first()
        return None if row is None else (row[0], row[1])

    @staticmethod
    def save_states(conn: Connection, model: str,
                    rows: list[tuple[str, int, bytes, str | None]]) -> None:
        """Upsert (target id, shard, packed state, acquisition id) rows of ``model`` straight
        through the driver: a checkpoint writes up to millions of rows."""
        if not rows:
            return
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        conn.exec_driver_sql(
            f"INSERT INTO {TARGET_STATE.name} (model, target_id, shard, data, acquisition_id) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (model, target_id) "
            # a target's shard is fixed for the deployment: leaving it alone is cheaper
            "DO UPDATE SET data = excluded.data, acquisition_id = excluded.acquisition_id",
            [(model, *row) for row in rows])

    # the observation log (daemon/observation_log.py)
    @staticmethod
    def write_log(conn: Connection, model: str, taken: LogTake) -> int:
        """Append each (target, season)'s new entries to its row, or write the row whole for
        the series that were re-stepped; returns the entries written."""
        if taken.batch is None:
            return 0
        now = utcnow()
        # bound once, as the column type would store it: not converted again for every row
        stamp: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f") if conn.dialect.name == "sqlite" \
            else now
        append: list[tuple[Any, ...]] = []
        replace: list[tuple[Any, ...]] = []
        for target, season, blobs in taken.batch.encoded():
            row = (model, target, season, *blobs, stamp)
            (replace if (target, season) in taken.replaced else append).append(row)
        columns = ("times", "bands", "outputs", "stops", "flags")
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        concat = "CAST({t}.{c} || excluded.{c} AS BLOB)" if conn.dialect.name == "sqlite" \
            else "{t}.{c} || excluded.{c}"
        insert = (f"INSERT INTO {OBSERVATION_LOG.name} (model, target_id, season, "
                  f"{', '.join(columns)}, updated_at) VALUES ({', '.join([mark] * 9)}) "
                  "ON CONFLICT (model, target_id, season) DO UPDATE SET ")
        for rows, value in ((append, concat), (replace, "excluded.{c}")):
            if rows:
                sets = [f"{c} = " + value.format(t=OBSERVATION_LOG.name, c=c) for c in columns]
                conn.exec_driver_sql(insert + ", ".join([*sets, "updated_at = excluded."
                                                         "updated_at"]), rows)
        return len(taken.batch)

    def read_log(self, model: str, target_ids: Sequence[str], season: int | None = None
                 ) -> dict[tuple[str, int], Series]:
        """The logged series of these targets under ``model`` (of one season, or all)."""
        from ..observation_log import Series

        table = OBSERVATION_LOG
        query = sa.select(table.c.target_id, table.c.season, table.c.times, table.c.bands,
                          table.c.outputs, table.c.stops, table.c.flags).where(
            table.c.model == model, table.c.target_id.in_(list(target_ids)))
        if season is not None:
            query = query.where(table.c.season == season)
        return {(row[0], int(row[1])): Series.decode(*row[2:]) for row in self._fetch_all(query)}

    def log_seasons(self, model: str, target_id: str) -> list[int]:
        table = OBSERVATION_LOG
        return [int(r[0]) for r in self._fetch_all(
            sa.select(table.c.season).where(table.c.model == model,
                                            table.c.target_id == target_id)
            .order_by(table.c.season))]

    def prune_log(self, before: datetime) -> int:
        """Delete the logged seasons last written before ``before``; returns how many."""
        with self.transaction() as conn:
            return int(conn.execute(OBSERVATION_LOG.delete().where(
                OBSERVATION_LOG.c.updated_at < before)).rowcount)

    def adopt_states(self, model: str) -> int:
        """Give state rows written before state was keyed by model to ``model``; returns how
        many (the first daemon to start on an upgraded store resumes them)."""
        table = TARGET_STATE
        with self.transaction() as conn:
            if conn.execute(sa.select(table.c.target_id).where(table.c.model == model)
                            .limit(1)).first() is not None:
                return 0  # the model has state of its own: the old rows stay as they are
            return int(conn.execute(table.update().where(table.c.model == "")
                                    .values(model=model)).rowcount)

    # deployment invariants
    def check_deployment(self, invariants: dict[str, str]) -> None:
        """Record settings fixed for the store's life on first start; refuse a start whose
        settings differ (StoreError naming each setting, its stored value and the fix)."""
        with self.transaction() as conn:
            stored = dict(conn.execute(sa.select(DEPLOYMENT.c.key, DEPLOYMENT.c.value)).all())
            changed = {k: (stored[k], v) for k, v in invariants.items()
                       if k in stored and stored[k] != v}
            if changed:
                listed = "; ".join(f"{k} is {new} but this store was set up with {old}"
                                   for k, (old, new) in changed.items())
                raise StoreError(f"{listed}. These are fixed for the life of a deployment: set "
                                 "them back, or start a new store (EOWATCH_STORE_URL) and, on "
                                 "Kafka, new topics (EOWATCH_TOPIC_PREFIX)")
            _upsert(conn, DEPLOYMENT, [{"key": k, "value": v, "updated_at": utcnow()}
                                       for k, v in invariants.items() if k not in stored],
                    ["key"], update=False)

    # shard ownership: an epoch per (group, shard), raised by each claim
    def claim_shards(self, group: str, shards: Sequence[int], owner: str) -> dict[int, int]:
        """Take these shards for ``owner``: their epochs go up by one. Returns shard -> epoch."""
        table = SHARD_OWNERS
        shards = [int(s) for s in shards]
        if not shards:
            return {}
        with self.transaction() as conn:
            current = self._epochs(conn, group, shards)
            now = utcnow()
            _upsert(conn, table, [{"group_id": group, "shard": s, "epoch": current.get(s, 0) + 1,
                                   "owner": owner, "updated_at": now} for s in shards],
                    ["group_id", "shard"], update=True)
        return {s: current.get(s, 0) + 1 for s in shards}

    @staticmethod
    def _epochs(conn: Connection, group: str, shards: Sequence[int]) -> dict[int, int]:
        """Current epochs of these shards, row-locked on PostgreSQL until the transaction ends."""
        table = SHARD_OWNERS
        statement = sa.select(table.c.shard, table.c.epoch).where(
            table.c.group_id == group, table.c.shard.in_(list(shards)))
        if conn.dialect.name == "postgresql":
            statement = statement.with_for_update()
        return {int(s): int(e) for s, e in conn.execute(statement)}

    @classmethod
    def stale_shards(cls, conn: Connection, group: str, epochs: dict[int, int]) -> list[int]:
        """Shards of ``epochs`` another member has claimed since (locked until the transaction
        ends, so no claim slips in before its commit)."""
        if not epochs:
            return []
        current = cls._epochs(conn, group, list(epochs))
        return sorted(s for s, e in epochs.items() if current.get(s) != e)

    def get_offsets(self, group: str) -> dict[tuple[str, int], int]:
        table = CONSUMER_OFFSETS
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.group_id == group))
            return {(r.topic, r.partition): r.next_offset for r in rows}

    @staticmethod
    def save_offsets(conn: Connection, group: str, offsets: dict[tuple[str, int], int]) -> None:
        now = utcnow()
        _upsert(conn, CONSUMER_OFFSETS,
                [{"group_id": group, "topic": t, "partition": p, "next_offset": o,
                  "updated_at": now} for (t, p), o in offsets.items()],
                ["group_id", "topic", "partition"], update=True)

    # outputs
    @staticmethod
    def insert_decisions(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert by deterministic id: a replayed decision is stored once."""
        _upsert(conn, DECISIONS, rows, ["decision_id"], update=False)

    @staticmethod
    def insert_dead_letters(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        now = utcnow()
        _upsert(conn, DEAD_LETTERS, [{**r, "created_at": now} for r in rows],
                ["topic", "partition", "offset", "reason"], update=False)

    def list_decisions(self, *, crop: str | None = None, feed: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       limit: int = 100, offset: int = 0) -> Page:
        table = DECISIONS
        conditions = []
        if crop:
            conditions.append(table.c.crop == crop)
        if feed:
            conditions.append(table.c.feed == feed)
        if since:
            conditions.append(table.c.acquired_at >= since)
        if until:
            conditions.append(table.c.acquired_at < until)
        return self._page(sa.select(table), table, conditions,
                          (table.c.acquired_at, table.c.decision_id), limit, offset,
                          lambda rows: [decision_view(r) for r in rows.mappings()])

    def _page(self, query: sa.Select, table: sa.Table, conditions: list[Any],
              order: Sequence[Any], limit: int, offset: int,
              view: Callable[[Any], list[dict[str, Any]]]) -> Page:
        """One page of ``query`` over ``table`` where all ``conditions`` hold, and the total."""
        where = sa.and_(sa.true(), *conditions)
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(table).where(where)
                                 ).scalar_one()
            items = view(conn.execute(query.where(where).order_by(*order).limit(limit)
                                      .offset(offset)))
        return Page(items, int(total))

    def decisions_for(self, parcel_id: str) -> list[dict[str, Any]]:
        table = DECISIONS
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.parcel_id == parcel_id)
                                .order_by(table.c.season)).mappings()
            return [decision_view(r) for r in rows]

    @staticmethod
    def insert_alerts(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert by deterministic id: a replayed alert is stored once."""
        now = utcnow()
        _upsert(conn, ALERTS, [{**r, "created_at": now} for r in rows], ["alert_id"],
                update=False)

    def list_alerts(self, *, area: str | None = None, kind: str | None = None,
                    since: datetime | None = None, limit: int = 100, offset: int = 0,
                    newest_first: bool = False) -> Page:
        """Alerts (their messages), oldest observation first (or newest); ``since``: observed
        at or after."""
        table = ALERTS
        conditions = []
        if area:
            conditions.append(table.c.area_id == area)
        if kind:
            conditions.append(table.c.kind == kind)
        if since:
            conditions.append(table.c.observed_at >= since)
        order = [c.desc() if newest_first else c for c in (table.c.observed_at,
                                                           table.c.alert_id)]
        return self._page(sa.select(table.c.payload), table, conditions, order, limit, offset,
                          lambda rows: [json.loads(r) for r in rows.scalars()])

    def cells_version(self) -> tuple[int, int, datetime | None]:
        """(cells, areas, newest area write): changes when areas or their cells are imported
        (the cells' count moves once replace_cells has committed)."""
        with self.engine.connect() as conn:
            cells = conn.execute(sa.select(sa.func.count()).select_from(CELLS)).scalar_one()
        return (int(cells), *self.areas_version())

    def areas_version(self) -> tuple[int, datetime | None]:
        """(count, newest write) of the areas."""
        with self.engine.connect() as conn:
            count, newest = conn.execute(sa.select(sa.func.count(),
                                                   sa.func.max(AREAS.c.created_at))).one()
        return int(count), newest

    def list_areas(self) -> list[dict[str, Any]]:
        """Every area: id, name, geometry (GeoJSON), source, grid definition (or None) and
        whether it is measured in optical images too."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(AREAS.c.id, AREAS.c.name, AREAS.c.geometry,
                                          AREAS.c.source, AREAS.c.grid, AREAS.c.optical)
                                .order_by(AREAS.c.id)).mappings().all()
        return [{**r, "grid": json.loads(r["grid"]) if r["grid"] else None} for r in rows]

    def get_area(self, area_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(AREAS).where(AREAS.c.id == area_id)).mappings().first()
        if row is None:
            return None
        area = dict(row)
        area["grid"] = json.loads(area["grid"]) if area["grid"] else None
        return area

    def area_states(self, model: str, area_id: str, coarse: bool = False
                    ) -> tuple[list[str], list[int], list[int], list[bytes | None]]:
        """(cell ids, rows, cols, checkpointed state or None) of an area's cells under
        ``model``: its fine grid's, or its coarse grid's."""
        state = TARGET_STATE
        rows = self._fetch_all(
            sa.select(CELLS.c.id, CELLS.c.row, CELLS.c.col, state.c.data)
            .select_from(CELLS.outerjoin(state, sa.and_(state.c.target_id == CELLS.c.id,
                                                        state.c.model == model)))
            .where(CELLS.c.area_id == area_id, ~_fine_cells() if coarse else _fine_cells())
            .order_by(CELLS.c.row, CELLS.c.col))
        if not rows:
            return [], [], [], []
        ids, r, c, data = zip(*rows, strict=True)
        return list(ids), list(r), list(c), list(data)

    def dead_letter_counts(self) -> dict[str, int]:
        table = DEAD_LETTERS
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.reason, sa.func.count()).group_by(table.c.reason))
            return {reason: int(n) for reason, n in rows}


def _fine_cells() -> sa.ColumnElement[bool]:
    """Cells of areas' fine grids, not of their coarse grids (eowatch.cells.COARSE)."""
    return ~CELLS.c.id.contains(f"{COARSE}/", autoescape=True)
