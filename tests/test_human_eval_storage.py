"""Listening tests without the app: storing the ratings (SQLite, and PostgreSQL when a server is provided)."""

from __future__ import annotations

import os
import threading

import pytest

from fluxbench.human_eval.storage import Responses, StorageError

pytest.importorskip("sqlalchemy")


# A server database is exercised when one is provided, e.g.
# FLUXBENCH_TEST_POSTGRES_URL=postgresql+psycopg://postgres@/postgres?host=/tmp&port=55432 (tables are dropped).
POSTGRES_ENV = "FLUXBENCH_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.sqlite'}"
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_ENV} to test against a PostgreSQL server")
    responses = Responses(url)
    responses.metadata.drop_all(responses.engine)
    responses.close()
    yield url
    responses = Responses(url)
    responses.metadata.drop_all(responses.engine)
    responses.close()


def test_storage_upsert_and_validation(database):
    responses = Responses(database)
    assert responses.register_rater("tok", "expert", {"training": "None"})
    assert not responses.register_rater("tok", "beginner", {})  # the first registration stands
    assert responses.rater("tok").group == "expert"
    responses.save_rating("tok", "clip", 2, 3)
    responses.save_rating("tok", "clip", 4, 5)
    (rating,) = responses.all_ratings()
    assert (rating.ovl, rating.rel, rating.revisions) == (4, 5, 2)
    for bad in (0, 6, True, 2.5):
        with pytest.raises(StorageError, match="off the 1-5 scale"):
            responses.save_rating("tok", "clip", bad, 3)
    with pytest.raises(StorageError, match="not registered"):
        responses.save_rating("stranger", "clip", 3, 3)
    responses.close()


def test_sqlite_wal_and_url_errors(tmp_path):
    responses = Responses(f"sqlite:///{tmp_path / 'r.sqlite'}")
    with responses.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with pytest.raises(StorageError, match="not an SQLAlchemy URL"):
        Responses("no-such-scheme")
    with pytest.raises(StorageError, match="does not exist"):
        Responses(f"sqlite:///{tmp_path / 'missing' / 'r.sqlite'}")


@pytest.mark.slow
def test_concurrent_raters_lose_and_duplicate_nothing(database):
    """50 rater threads x 100 ratings, each also revising every tenth rating, against one database."""
    responses = Responses(database)
    errors: list[str] = []
    start = threading.Barrier(50)

    def rater(number: int) -> None:
        try:
            token = f"rater{number}"
            responses.register_rater(token, "expert" if number % 2 else "beginner", {"n": number})
            start.wait()
            for clip in range(100):
                responses.save_rating(token, f"clip{clip}", 1 + (number + clip) % 5, 1 + (number * clip) % 5)
            for clip in range(0, 100, 10):
                responses.save_rating(token, f"clip{clip}", 1 + (number + clip + 1) % 5, 1 + (number * clip) % 5)
        except Exception as error:  # collected and asserted below
            errors.append(repr(error))

    threads = [threading.Thread(target=rater, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A fresh connection sees every write exactly once, with the last value.
    responses.close()
    reader = Responses(database)
    rows = reader.all_ratings()
    reader.close()
    assert len(rows) == 5000
    assert len({(r.token, r.clip_id) for r in rows}) == 5000
    for row in rows:
        number, clip = int(row.token[5:]), int(row.clip_id[4:])
        revised = clip % 10 == 0
        assert row.ovl == 1 + (number + clip + revised) % 5
        assert row.rel == 1 + (number * clip) % 5
        assert row.revisions == (2 if revised else 1)
