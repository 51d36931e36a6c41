"""Where ratings live: any SQLAlchemy database, SQLite in the study folder by default.

One row per (rater, clip): a rating is written in its own transaction as an upsert, so a resubmitted or
revised rating replaces the earlier one (counted in `revisions`) and concurrent raters never lose or duplicate
a write. SQLite runs in WAL mode (readers never block the writer) with a generous busy timeout and a full
sync per commit; for a hosted study pass a server URL such as `postgresql+psycopg://user@host/db`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fluxbench.human_eval.study import ASPECTS, DEFAULT_DB_FILE, GROUPS, SCORES, Study, StudyError

# The URL may carry a password, so it can come from the environment instead of the command line.
DATABASE_ENV = "FLUXBENCH_HUMAN_EVAL_DB"


class StorageError(StudyError):
    pass


def database_url(study_root: str | Path, override: str | None = None) -> str:
    """--db beats $FLUXBENCH_HUMAN_EVAL_DB beats `responses.sqlite` inside the study folder."""
    if override:
        return override
    if os.environ.get(DATABASE_ENV):
        return os.environ[DATABASE_ENV]
    return f"sqlite:///{(Path(study_root) / DEFAULT_DB_FILE).resolve()}"


@dataclass(frozen=True)
class Rating:
    token: str
    clip_id: str
    ovl: int
    rel: int
    revisions: int
    updated_at: datetime


@dataclass(frozen=True)
class RaterRecord:
    token: str
    group: str
    background: dict
    registered_at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Responses:
    """The ratings and rater records of one study.

    With `study`, a rating is stored only for a clip in that rater's own playlist, whoever calls."""

    def __init__(self, url: str, study: Study | None = None):
        import sqlalchemy as sa

        self._sa = sa
        self._playlists = {token: frozenset(plan.order) for token, plan in study.raters.items()} if study else None
        try:
            engine_url = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise StorageError(f"database URL {url!r} is not an SQLAlchemy URL (e.g. sqlite:///path.sqlite)") from None
        self.dialect = engine_url.get_backend_name()
        options: dict = {}
        if self.dialect == "sqlite":
            database = engine_url.database
            if database and database != ":memory:" and not Path(database).parent.is_dir():
                raise StorageError(f"database folder {Path(database).parent} does not exist")
            options = {"connect_args": {"timeout": 60, "check_same_thread": False},
                       "pool_size": 8, "max_overflow": 56, "pool_timeout": 120}
        try:
            self.engine = sa.create_engine(engine_url, **options)
        except ModuleNotFoundError as error:
            raise StorageError(f"cannot open database {engine_url.render_as_string()}: its driver is not installed "
                               f"({error}); e.g. pip install 'psycopg[binary]' for postgresql+psycopg://") from None
        except Exception as error:  # bad options: one line for the user
            raise StorageError(f"cannot open database {engine_url.render_as_string()}: {error}") from None
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

        self.metadata = metadata = sa.MetaData()
        self.raters = sa.Table(
            "raters", metadata,
            sa.Column("token", sa.String(64), primary_key=True),
            sa.Column("rater_group", sa.String(32), nullable=False),
            sa.Column("background", sa.Text, nullable=False),
            sa.Column("registered_at", sa.DateTime, nullable=False),
        )
        self.ratings = sa.Table(
            "ratings", metadata,
            sa.Column("token", sa.String(64), sa.ForeignKey("raters.token"), primary_key=True),
            sa.Column("clip_id", sa.String(64), primary_key=True),
            sa.Column("ovl", sa.SmallInteger, nullable=False),
            sa.Column("rel", sa.SmallInteger, nullable=False),
            sa.Column("revisions", sa.Integer, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
            sa.CheckConstraint("ovl BETWEEN 1 AND 5", name="ovl_on_scale"),
            sa.CheckConstraint("rel BETWEEN 1 AND 5", name="rel_on_scale"),
        )
        try:
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as error:
            raise StorageError(f"cannot prepare database {engine_url.render_as_string()}: {error}") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- raters ---------------------------------------------------------------------------------------------

    def register_rater(self, token: str, group: str, background: dict) -> bool:
        """Record a rater's group and background answers once; False when the rater was already known."""
        if group not in GROUPS:
            raise StorageError(f"rater group {group!r} unknown; expected one of {', '.join(GROUPS)}")
        row = {"token": token, "rater_group": group, "background": json.dumps(background, sort_keys=True),
               "registered_at": _now()}
        statement = self._insert(self.raters).values(**row)
        if self.dialect in ("sqlite", "postgresql"):
            # RETURNING tells whether this call inserted the row (rowcount is not reliable across drivers).
            statement = statement.on_conflict_do_nothing(index_elements=["token"]).returning(self.raters.c.token)
            with self.engine.begin() as connection:
                return connection.execute(statement).first() is not None
        try:
            with self.engine.begin() as connection:
                connection.execute(statement)
            return True
        except self._sa.exc.IntegrityError:
            return False

    def rater(self, token: str) -> RaterRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(self.raters.select().where(self.raters.c.token == token)).first()
        return None if row is None else self._rater_record(row)

    def all_raters(self) -> list[RaterRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(self.raters.select().order_by(self.raters.c.token)).all()
        return [self._rater_record(row) for row in rows]

    @staticmethod
    def _rater_record(row) -> RaterRecord:
        return RaterRecord(row.token, row.rater_group, json.loads(row.background), row.registered_at)

    # -- ratings --------------------------------------------------------------------------------------------

    def save_rating(self, token: str, clip_id: str, ovl: int, rel: int) -> None:
        """Store one rating atomically; a second rating of the same clip by the same rater replaces the first."""
        for aspect, value in zip(ASPECTS, (ovl, rel)):
            if isinstance(value, bool) or value not in SCORES:
                raise StorageError(f"{aspect.upper()} rating {value!r} for clip {clip_id} is off the 1-5 scale")
        if self._playlists is not None and clip_id not in self._playlists.get(token, ()):
            raise StorageError(f"rating of clip {clip_id} refused: not in the playlist of rater {token!r}")
        now = _now()
        values = {"token": token, "clip_id": clip_id, "ovl": int(ovl), "rel": int(rel),
                  "revisions": 1, "created_at": now, "updated_at": now}
        table = self.ratings
        try:
            if self.dialect in ("sqlite", "postgresql"):
                statement = self._insert(table).values(**values)
                statement = statement.on_conflict_do_update(
                    index_elements=["token", "clip_id"],
                    set_={"ovl": statement.excluded.ovl, "rel": statement.excluded.rel,
                          "revisions": table.c.revisions + 1, "updated_at": statement.excluded.updated_at},
                )
                with self.engine.begin() as connection:
                    connection.execute(statement)
                return
            try:
                with self.engine.begin() as connection:
                    connection.execute(table.insert().values(**values))
            except self._sa.exc.IntegrityError:
                with self.engine.begin() as connection:
                    connection.execute(
                        table.update()
                        .where((table.c.token == token) & (table.c.clip_id == clip_id))
                        .values(ovl=int(ovl), rel=int(rel), revisions=table.c.revisions + 1, updated_at=now))
        except self._sa.exc.IntegrityError as error:
            raise StorageError(f"rating of clip {clip_id} refused: rater {token!r} is not registered ({error.orig})") \
                from None

    def ratings_of(self, token: str) -> dict[str, tuple[int, int]]:
        """One rater's own ratings, clip id -> (OVL, REL); nobody else's are ever read for a rater."""
        table = self.ratings
        with self.engine.connect() as connection:
            rows = connection.execute(
                self._sa.select(table.c.clip_id, table.c.ovl, table.c.rel).where(table.c.token == token)).all()
        return {row.clip_id: (row.ovl, row.rel) for row in rows}

    def all_ratings(self) -> list[Rating]:
        table = self.ratings
        with self.engine.connect() as connection:
            rows = connection.execute(table.select().order_by(table.c.token, table.c.clip_id)).all()
        return [Rating(r.token, r.clip_id, r.ovl, r.rel, r.revisions, r.updated_at) for r in rows]

    def _insert(self, table):
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            return table.insert()
        return insert(table)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
