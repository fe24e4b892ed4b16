"""Alembic environment for the judge store.

At runtime ``judge.store`` passes an open connection in ``config.attributes``; for
development (``alembic -c judge/migrations/alembic.ini revision --autogenerate``) the
URL comes from ``JUDGE_DATABASE_URL`` or the embedded default.
"""

from __future__ import annotations

from alembic import context

from judge.store._tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from judge.config import get_settings
    from judge.store._engine import make_engine, normalise_url

    engine = make_engine(normalise_url(get_settings().database_url))
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("judge migrations run online only (they need a connection).")
run_migrations_online()
