"""Personal data at rest: SM4-GCM field encryption and HMAC-SM3 blind indexes.

- **Encryption**: :func:`field_cipher` seals a value into a self-describing
  ``sm4gcm.<key id>.<...>`` token (``core.gm.sm4.FieldCipher``). The key is derived
  from the master key (``core.keyring``) and carries the master key's id, so
  after a master-key change old tokens still open (``IDP_OLD_MASTER_KEYS``) and
  :func:`reencrypt` moves them to the current key. The associated data binds a
  token to its table, column and row (``person/national_id/<uid>``): a value
  copied to another row does not decrypt.
- **Blind index**: :func:`blind_index` is ``HMAC-SM3(key, kind || 0x00 || value)``
  of the *normalised* value, for exact lookups without decrypting. While a
  master-key change is in progress, :func:`blind_index_candidates` gives the
  index under every known key, so lookups keep working until
  :func:`reencrypt` has rewritten every row.
- **Sealer**: :func:`sealer` gathers the derived keys once (a :class:`Sealer`,
  picklable), so bulk work such as ``idp import`` can seal and index in
  worker processes without the settings or the master keys.
- **Registry**: each layer declares its encrypted columns with
  :func:`register` (an :class:`EncryptedColumn`), so one command re-encrypts all
  of them in batches (``idp keys reencrypt``). Batches commit one by one and
  only rows under an old key are selected, so an interrupted run just resumes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.gm.sm4 import FIELD_SCHEME, FieldCipher
from core.keyring import derive
from core.settings import Settings

FIELD_PURPOSE = "field/sm4-gcm/v1"
BLIND_INDEX_PURPOSE = "blind-index/hmac-sm3/v1"


def _master_keys(settings: Settings) -> dict[str, bytes]:
    """Current master key first, then the old ones."""
    keys = {settings.master_key_id: settings.master_key_bytes}
    for key_id, key in settings.old_master_key_bytes.items():
        keys.setdefault(key_id, key)
    return keys


@cache
def _cipher(keys: tuple[tuple[str, bytes], ...], current: str) -> FieldCipher:
    return FieldCipher({kid: derive(key, FIELD_PURPOSE, 16) for kid, key in keys}, current)


def field_cipher(settings: Settings) -> FieldCipher:
    return _cipher(tuple(_master_keys(settings).items()), settings.master_key_id)


@cache
def _index_key(master_key: bytes) -> bytes:
    return derive(master_key, BLIND_INDEX_PURPOSE, 32)


@cache
def _keyed_mac(index_key: bytes) -> hmac.HMAC:
    """HMAC-SM3 with the key already absorbed: each index copies it (no key schedule)."""
    return hmac.new(index_key, digestmod="sm3")


def _mac_hex(index_key: bytes, kind: str, value: str) -> str:
    mac = _keyed_mac(index_key).copy()
    mac.update(kind.encode() + b"\x00" + value.encode())
    return mac.hexdigest()


def _index(master_key: bytes, kind: str, value: str) -> str:
    return _mac_hex(_index_key(master_key), kind, value)


def blind_index(settings: Settings, kind: str, value: str) -> str:
    """The index of a normalised ``value`` under the current master key."""
    return _index(settings.master_key_bytes, kind, value)


def blind_index_candidates(settings: Settings, kind: str, value: str) -> list[str]:
    """The index under every known master key (current first), for lookups."""
    return [_index(key, kind, value) for key in _master_keys(settings).values()]


@dataclass(frozen=True)
class Sealer:
    """The derived keys of :func:`seal` and :func:`blind_index_candidates`, gathered once.

    Holds no master key and no settings; it pickles, so worker processes can
    seal and index. Same tokens and indexes as the module functions.
    """

    cipher: FieldCipher
    index_keys: tuple[bytes, ...]  # current master key's first

    def candidates(self, kind: str, value: str) -> list[str]:
        return [_mac_hex(key, kind, value) for key in self.index_keys]

    def sealed(self, column: EncryptedColumn, key: object, value: str,
               index: str | None = None) -> dict[str, str]:
        """The values to write for a non-empty ``value`` in the row whose row key is ``key``:
        the column's token, and its blind index (``index``, when known already)."""
        values = {column.column: self.cipher.encrypt(value, context=column.context_of(key))}
        if column.index_column and column.index_kind:
            values[column.index_column] = index or _mac_hex(self.index_keys[0],
                                                            column.index_kind, value)
        return values

    def seal(self, column: EncryptedColumn, row: object, value: str,
             index: str | None = None) -> None:
        """Like :func:`seal` for a non-empty value; ``index``: its blind index, if known."""
        for name, written in self.sealed(column, getattr(row, column.row_key), value,
                                         index).items():
            setattr(row, name, written)


def sealer(settings: Settings) -> Sealer:
    return Sealer(field_cipher(settings),
                  tuple(_index_key(key) for key in _master_keys(settings).values()))


@dataclass(frozen=True)
class EncryptedColumn:
    """One encrypted column: ``<context>/<row key>`` is the associated data."""

    model: type
    column: str
    context: str
    row_key: str = "id"
    index_column: str | None = None
    index_kind: str | None = None

    def associated_data(self, row: object) -> bytes:
        return self.context_of(getattr(row, self.row_key))

    def context_of(self, key: object) -> bytes:
        """The associated data of the row whose row key is ``key``."""
        return f"{self.context}/{key}".encode()


_REGISTRY: list[EncryptedColumn] = []


def register(column: EncryptedColumn) -> EncryptedColumn:
    if column not in _REGISTRY:
        _REGISTRY.append(column)
    return column


def registered() -> list[EncryptedColumn]:
    return list(_REGISTRY)


def seal(settings: Settings, column: EncryptedColumn, row: object, value: str | None) -> None:
    """Set ``column`` (and its blind index) on ``row`` from a normalised plaintext."""
    if value is None:
        setattr(row, column.column, None)
        if column.index_column:
            setattr(row, column.index_column, None)
        return
    sealer(settings).seal(column, row, value)


def open_(settings: Settings, column: EncryptedColumn, row: object) -> str | None:
    token = getattr(row, column.column)
    if token is None:
        return None
    return field_cipher(settings).decrypt(token, context=column.associated_data(row)).decode()


def _stale_rows(session: Session, column: EncryptedColumn, current: str, batch: int) -> list:
    attribute = getattr(column.model, column.column)
    prefix = f"{FIELD_SCHEME}.{current}."
    return list(session.scalars(
        select(column.model).where(attribute.is_not(None), ~attribute.startswith(prefix))
        .limit(batch)
    ))


def reencrypt(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    batch: int = 500,
    progress: Callable[[EncryptedColumn, int], None] | None = None,
) -> dict[str, int]:
    """Move every registered column to the current key; return rows rewritten per column."""
    counts: dict[str, int] = {}
    for column in registered():
        counts[f"{column.context}"] = sum(
            _reencrypt_batches(settings, sessions, column, batch, progress)
        )
    return counts


def _reencrypt_batches(
    settings: Settings, sessions: sessionmaker[Session], column: EncryptedColumn, batch: int,
    progress: Callable[[EncryptedColumn, int], None] | None,
) -> Iterator[int]:
    current = field_cipher(settings).current_key_id
    while True:
        with sessions.begin() as session:
            rows = _stale_rows(session, column, current, batch)
            moved = sum(_reseal(session, settings, column, row) for row in rows)
        if not rows:
            return
        if progress:
            progress(column, moved)
        yield moved


def _reseal(session: Session, settings: Settings, column: EncryptedColumn, row: object) -> int:
    """Seal the row's value again under the current key, unless a writer changed it since it
    was read (an import giving a phone login another number): then that writer's value,
    sealed under the current key already, stays. One conditional ``UPDATE``; 1 if done."""
    read = getattr(row, column.column)
    changes = sealer(settings).sealed(column, getattr(row, column.row_key),
                                      open_(settings, column, row))
    mapper = inspect(column.model)
    keys = mapper.primary_key_from_instance(row)
    attribute = getattr(column.model, column.column)
    same_row = [key == found for key, found in zip(mapper.primary_key, keys, strict=True)]
    statement = (update(column.model).where(attribute == read, *same_row).values(changes)
                 .execution_options(synchronize_session=False))
    return session.execute(statement).rowcount or 0
