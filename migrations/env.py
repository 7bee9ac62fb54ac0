"""Alembic environment: the URL comes from the project's settings, the metadata from its models."""

from __future__ import annotations

from alembic import context

from celery_app.infra.db import make_engine
from runbooks.engine.history_tables import schema_metadata

config = context.config
target_metadata = schema_metadata()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from celery_app.settings import load_settings

    return load_settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
