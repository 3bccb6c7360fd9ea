"""``idp db prune`` on a large refresh-token table: time per size, to see it stays linear.

    .venv/bin/python bench/prune.py [--tokens 250000 1000000]

For each size: a fresh PostgreSQL database (as ``bench/oidc.py``), that many one-token
families of which one in four ended long ago, spread through the table (the order of their
ids), then ``idp.oidc.refresh_tokens.prune`` as the command runs it. Prints the seconds and
the tokens removed. Linear means four times the tokens in about four times the time.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import sessionmaker

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
import oidc as bench

import migrations.models  # noqa: F401 - every table
from core.db import Base, utcnow
from idp.oidc.refresh_tokens import RefreshToken, prune


def fill(engine, tokens: int) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO person (uid, name, status, created_at, updated_at)"
                                " VALUES ('u', 'n', 'active', now(), now())"))
        connection.execute(text("INSERT INTO account (person_id, sub, disabled, "
                                "must_change_password, created_at) "
                                "VALUES (1, 's', false, false, now())"))
        now = utcnow()
        for start in range(0, tokens, 20_000):
            connection.execute(insert(RefreshToken.__table__), [
                {"token_mac": f"m{i}", "family": f"{i:010d}", "client_id": "app",
                 "account_id": 1, "grant_json": "{}", "created_at": now,
                 "expires_at": now + timedelta(days=-400 if i % 4 == 0 else 20)}
                for i in range(start, min(start + 20_000, tokens))])
        connection.execute(text("ANALYZE refresh_token"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for tokens in args.tokens:
        with contextlib.ExitStack() as stack:
            engine = create_engine(bench.create_database(stack, args.postgres))
            stack.callback(engine.dispose)
            Base.metadata.create_all(engine)
            fill(engine, tokens)
            began = time.perf_counter()
            removed = prune(sessionmaker(engine), utcnow() - timedelta(days=1))
            took = time.perf_counter() - began
            print(f"{tokens:>10,} tokens: removed {removed:,} in {took:.2f} s "
                  f"({tokens / took:,.0f} tokens scanned per second)")


if __name__ == "__main__":
    main()
