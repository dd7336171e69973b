"""Opening a fresh store from several processes at once: schema creation must not race."""

import multiprocessing as mp

import pytest
import sqlalchemy as sa

from shadow_dagster.store.outputs import ShadowOutputStore
from shadow_dagster.store.engine import create_engine, create_schema
from shadow_dagster.store.signal_store import SignalStore


def _tables(url):
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _lose_the_race_once(monkeypatch, engine):
    """Make the first existence check answer 'missing' although the tables exist: the interleaving
    in which another process creates them between this process's check and its CREATE."""
    cls = type(engine.dialect)
    real = cls.has_multi_table  # what create_all(checkfirst=True) asks in SQLAlchemy 2.1
    calls = {"n": 0}

    def has_multi_table(self, connection, names, schema=None, **kw):
        calls["n"] += 1
        found = dict(real(self, connection, names, schema=schema, **kw))
        return {k: False for k in found} if calls["n"] == 1 else found

    monkeypatch.setattr(cls, "has_multi_table", has_multi_table)
    return calls


def test_create_schema_survives_a_table_created_between_check_and_create(store_url, monkeypatch):
    md = sa.MetaData()
    sa.Table("raced", md, sa.Column("id", sa.Integer, primary_key=True), sa.Index("ix_raced", "id"))
    engine = create_engine(store_url)
    try:
        md.create_all(engine)                       # the other process won
        with engine.begin() as conn:
            conn.execute(md.tables["raced"].insert().values(id=7))
        calls = _lose_the_race_once(monkeypatch, engine)
        with pytest.raises(sa.exc.DBAPIError, match="already exists"):
            md.create_all(engine, checkfirst=True)  # plain create_all fails on this interleaving
        calls["n"] = 0
        create_schema(md, engine)                   # the helper checks again and carries on
        assert calls["n"] >= 2
        with engine.connect() as conn:              # and the winner's data is untouched
            assert conn.execute(sa.select(md.tables["raced"].c.id)).scalars().all() == [7]
    finally:
        engine.dispose()


def test_create_schema_raises_other_errors(tmp_path):
    md = sa.MetaData()
    sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("x", sa.Integer, server_default=sa.text("((")))  # DDL the database rejects
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with pytest.raises(sa.exc.OperationalError, match="syntax error"):
            create_schema(md, engine)
    finally:
        engine.dispose()


def test_shadow_output_store_opens_when_it_loses_the_race(tmp_path, store_url, monkeypatch):
    ShadowOutputStore(tmp_path / "a", store_url).dispose()
    engine = create_engine(store_url)
    _lose_the_race_once(monkeypatch, engine)
    engine.dispose()
    store = ShadowOutputStore(tmp_path / "b", store_url)
    store.dispose()
    assert "shadow_outputs" in _tables(store_url)


def _open_both(url, root, barrier):
    barrier.wait()
    ShadowOutputStore(root, url).dispose()
    SignalStore(url).dispose()


def test_processes_opening_a_fresh_store_together(tmp_path, store_url):
    ctx = mp.get_context("spawn")
    n = 6
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_open_both, args=(store_url, str(tmp_path / f"s{i}"), barrier))
             for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n
    assert {"shadow_outputs", "shadow_signals"} <= _tables(store_url)
