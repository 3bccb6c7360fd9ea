"""The ledger of keys already seen in this file: duplicates, snapshot coverage, ``recall``.

Finding the second occurrence of a student number, and (in snapshot mode) the
people a file does *not* mention, needs every key of the file. Kept in a Python
set that would grow with the file; the ledger keeps them in a temporary SQLite
file instead, so memory stays flat whatever the file size.

No personal data reaches the disk: keys are stored as a keyed BLAKE2b digest
under a random per-run secret, and the file is deleted when the run ends.

Most lookups find nothing (a first import asks, for every row, whether an
earlier chunk planned its phone or national ID), and a miss still walks SQLite's
B-tree, from disk once the file outgrows SQLite's cache. A Bloom filter of fixed
size (4 MiB, three bits per key, taken from the digest) answers most misses in
memory: about 1 % of misses reach SQLite at 2 million keys, 7 % at 6 million.
Fixed size keeps memory flat; a false positive only costs the query it saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterable

_BATCH = 900  # below SQLite's oldest limit on bound parameters
_BLOOM_BITS = 1 << 25  # 4 MiB
_MASK = _BLOOM_BITS - 1


class _Bloom:
    """Which digests may have been recorded: three bit positions from each digest."""

    def __init__(self) -> None:
        self._bits = bytearray(_BLOOM_BITS // 8)

    def add(self, digests: Iterable[bytes]) -> None:
        bits = self._bits
        for digest in digests:
            for at in _positions(digest):
                bits[at >> 3] |= 1 << (at & 7)

    def may_hold(self, digest: bytes) -> bool:
        bits = self._bits
        return all(bits[at >> 3] & (1 << (at & 7)) for at in _positions(digest))


def _positions(digest: bytes) -> tuple[int, int, int]:
    h = int.from_bytes(digest, "little")
    return h & _MASK, (h >> 25) & _MASK, (h >> 50) & _MASK


class Ledger:
    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._bloom = _Bloom()
        fd, self._path = tempfile.mkstemp(prefix="idp-import-", suffix=".ledger")
        os.close(fd)
        self._db = sqlite3.connect(self._path)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-64000;"
            "CREATE TABLE seen (digest BLOB PRIMARY KEY, row INTEGER) WITHOUT ROWID;"
        )

    def _digest(self, kind: str, key: str) -> bytes:
        return hashlib.blake2b(f"{kind}\x00{key}".encode(), key=self._secret,
                               digest_size=16).digest()

    def claim(self, kind: str, entries: Iterable[tuple[str, int]]) -> dict[int, int]:
        """Record ``(key, row)`` pairs; return ``{row: first row}`` for keys seen before."""
        first: dict[bytes, int] = {}
        repeats: dict[int, int] = {}
        for key, row in entries:
            digest = self._digest(kind, key)
            if digest in first:
                repeats[row] = first[digest]
            else:
                first[digest] = row
        known = self._lookup(list(first))
        for digest, row in first.items():
            if digest in known:
                repeats[row] = known[digest]
        new = sorted((d, r) for d, r in first.items() if d not in known)  # key order: fewer pages
        self._db.executemany("INSERT INTO seen VALUES (?, ?)", new)
        self._bloom.add(d for d, _ in new)
        return repeats

    def mark(self, kind: str, entries: Iterable[tuple[str, int]]) -> None:
        """Record ``(key, row)`` pairs without duplicate checks (keys of invalid rows)."""
        pairs = [(self._digest(kind, k), r) for k, r in entries]
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", pairs)
        self._bloom.add(d for d, _ in pairs)

    def put(self, kind: str, entries: Iterable[tuple[str, int]]) -> None:
        """Record ``(key, number)`` pairs, replacing the number of a key recorded before."""
        pairs = [(self._digest(kind, k), n) for k, n in entries]
        self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", pairs)
        self._bloom.add(d for d, _ in pairs)

    def get(self, kind: str, keys: Iterable[str]) -> dict[str, int]:
        """The numbers recorded (``claim``, ``mark``, ``put``) for those of ``keys`` seen."""
        by_digest = {self._digest(kind, k): k for k in keys}
        return {by_digest[d]: n for d, n in self._lookup(list(by_digest)).items()}

    def fingerprint(self, value: str) -> int:
        """A keyed 63-bit hash of ``value``: what ``put`` stores in place of a value."""
        return int.from_bytes(self._digest("value", value)[:8], "big") >> 1

    def seen(self, kind: str, keys: Iterable[str]) -> set[str]:
        by_digest = {self._digest(kind, k): k for k in keys}
        return {by_digest[d] for d in self._lookup(list(by_digest))}

    def _lookup(self, digests: list[bytes]) -> dict[bytes, int]:
        digests = [d for d in digests if self._bloom.may_hold(d)]
        found: dict[bytes, int] = {}
        for start in range(0, len(digests), _BATCH):
            part = digests[start:start + _BATCH]
            marks = ",".join("?" * len(part))
            found.update(self._db.execute(
                f"SELECT digest, row FROM seen WHERE digest IN ({marks})", part  # noqa: S608
            ))
        return found

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
