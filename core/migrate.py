"""Schema migrations through alembic, driven from code (``idp db upgrade``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from core.settings import PROJECT_ROOT

SCRIPT_LOCATION = PROJECT_ROOT / "migrations"


def alembic_config(engine: Engine | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = None
    config.attributes["engine"] = engine
    return config


class UnknownRevision(ValueError):
    """A revision alembic cannot find or reach (``idp db upgrade nonsense``)."""


def _run(engine: Engine, action: str, revision: str) -> None:
    from alembic.util.exc import CommandError

    config = alembic_config(engine)
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        try:
            getattr(command, action)(config, revision)
        except CommandError as exc:  # its message names the revision, nothing secret
            raise UnknownRevision(str(exc)) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    _run(engine, "downgrade", revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
