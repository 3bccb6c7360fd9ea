"""Password hashing with self-describing hash strings.

Every stored hash names its own scheme, so hashes of different schemes can live side by
side in one column and be upgraded one login at a time.

Schemes written by :meth:`Passwords.hash`
-----------------------------------------
``argon2id`` (default)
    Standard PHC string from argon2-cffi, e.g.
    ``$argon2id$v=19$m=19456,t=2,p=1$<b64 salt>$<b64 hash>`` (OWASP's minimum
    configuration: 19 MiB, 2 passes, 1 lane; 16-byte salt, 32-byte tag).

``pbkdf2-sm3`` (for deployments that must use national algorithms only)
    ``$pbkdf2-sm3$i=<iterations>$<b64 salt>$<b64 hash>``: PBKDF2 (RFC 8018) with
    HMAC-SM3 (GB/T 32905), a 16-byte salt from :mod:`secrets` and a 32-byte derived key.
    ``b64`` is the PHC "B64" encoding: standard base64 alphabet (``+``, ``/``) without
    ``=`` padding; only the canonical encoding is accepted. ``i`` is decimal without
    leading zeros.

    Default iterations: 100,000. On the reference machine (2 vCPU) one argon2id hash at
    the default parameters takes ~19 ms and PBKDF2-HMAC-SM3 runs at ~1,750 iterations
    per ms, so 100,000 iterations take ~57 ms. A wall-clock match with argon2id would be
    only ~33,000 iterations, but PBKDF2 is not memory-hard, so equal time is far from
    equal attacker cost; 100,000 is a compromise between that and OWASP's 600,000 for
    PBKDF2-HMAC-SHA256 (~350 ms per login here with SM3). Raise ``pbkdf2_iterations``
    when the hardware allows: stored hashes with fewer iterations are upgraded at the
    next successful login.

Legacy schemes (verify only, imported from old school systems)
--------------------------------------------------------------
Produce these with :func:`import_legacy_hash`; they verify, and a successful
verification returns a replacement hash in the configured scheme
(:attr:`VerifyResult.new_hash`) which the caller must store.

``$legacy-md5$<hex>``
    ``md5(password)``, unsalted, 32 hex digits.
``$legacy-sha1$<hex>``
    ``sha1(password)``, unsalted, 40 hex digits.
``$legacy-sha256$<b64 salt>$<hex>``
    ``sha256(salt + password)`` (salt first), 64 hex digits.
``$legacy-sha256-ps$<b64 salt>$<hex>``
    ``sha256(password + salt)`` (salt last), the other common convention.
``$2a$`` / ``$2b$`` / ``$2y$`` bcrypt
    Stored unchanged, verified with the ``bcrypt`` package (cost 4..16 accepted).
    bcrypt only ever looked at the first 72 bytes of a password, and ``bcrypt`` 5 raises
    for longer input, so the UTF-8 password is cut to 72 bytes for verification, as the
    old systems did.

In the legacy formats the salt is stored as PHC B64 of its bytes (so any salt, even one
containing ``$``, survives); the hex digest is lowercase. Legacy digests are computed
over the UTF-8 bytes of the password exactly as typed (no Unicode normalisation),
because that is what the old systems hashed.

Password text
-------------
Passwords are ``str``. For the current schemes they are normalised to Unicode **NFKC**
(as NIST SP 800-63B recommends) and then encoded as UTF-8. NFKC, unlike NFC, also folds
compatibility forms, notably the full-width Latin letters and digits that Chinese input
methods produce (``ｐａｓｓ１`` == ``pass1``), so a password typed with the IME in
full-width mode still matches. The normalisation is part of the stored formats: any
other implementation verifying these hashes must apply NFKC too.

Passwords longer than :data:`MAX_PASSWORD_LENGTH` (1024) characters are rejected
(DoS guard): :meth:`Passwords.hash` raises :class:`ValueError`; :meth:`Passwords.verify`
returns ``ok=False`` without hashing. Strings that cannot be encoded as UTF-8 (lone
surrogates) are treated the same way.

Verification
------------
:meth:`Passwords.verify` never raises for a wrong password or for a garbage/unknown
stored string; it returns ``VerifyResult(ok=False)``. Digest comparisons use
:func:`hmac.compare_digest` (argon2 and bcrypt compare in constant time internally).
For unknown accounts call :meth:`Passwords.dummy_verify`, which verifies against a
precomputed hash of the configured scheme so the response takes as long as a real
verification. Fast legacy digests and unparseable stored strings are padded with the
same dummy verification, so an account holding them does not answer faster than an
unknown one. Residual timing differences remain for bcrypt (its own cost) and for
hashes of the non-configured scheme or with other parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import Counter

__all__ = [
    "DEFAULT_PBKDF2_ITERATIONS",
    "MAX_PASSWORD_LENGTH",
    "Passwords",
    "Scheme",
    "VerifyResult",
    "import_legacy_hash",
]

Scheme = Literal["argon2id", "pbkdf2-sm3"]

MAX_PASSWORD_LENGTH: Final = 1024
"""Longest accepted password, in characters (before normalisation)."""

DEFAULT_ARGON2_TIME_COST: Final = 2
DEFAULT_ARGON2_MEMORY_COST: Final = 19456  # KiB = 19 MiB
DEFAULT_ARGON2_PARALLELISM: Final = 1

DEFAULT_PBKDF2_ITERATIONS: Final = 100_000
MIN_PBKDF2_ITERATIONS: Final = 10_000
"""Lowest iteration count :class:`Passwords` can be configured with (stored hashes with
fewer still verify, and are upgraded)."""
MAX_PBKDF2_ITERATIONS: Final = 10_000_000
"""Stored pbkdf2-sm3 hashes above this are rejected rather than computed (DoS guard)."""
PBKDF2_SALT_BYTES: Final = 16
PBKDF2_KEY_BYTES: Final = 32

MAX_BCRYPT_COST: Final = 16
"""Legacy bcrypt hashes with a higher cost (~5 s and up) are rejected (DoS guard)."""
BCRYPT_MAX_PASSWORD_BYTES: Final = 72

_PBKDF2_PREFIX: Final = "$pbkdf2-sm3$"
_ARGON2_PREFIXES: Final = ("$argon2id$", "$argon2i$", "$argon2d$")

_B64 = r"[A-Za-z0-9+/]+"
_PBKDF2_RE = re.compile(rf"\$pbkdf2-sm3\$i=([1-9][0-9]{{0,9}})\$({_B64})\$({_B64})")
_BCRYPT_RE = re.compile(r"\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}")
_LEGACY_UNSALTED = {
    # prefix: (hashlib name, hex digits)
    "$legacy-md5$": ("md5", 32),
    "$legacy-sha1$": ("sha1", 40),
}
_LEGACY_SALTED_RE = re.compile(rf"\$legacy-sha256(-ps)?\$({_B64})\$([0-9a-fA-F]{{64}})")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :meth:`Passwords.verify`.

    ``ok``: the password matches. ``new_hash``: set only when ``ok`` and the stored hash
    should be replaced (legacy scheme, other scheme, weaker parameters); store it.

    Truthiness is ``ok``, so ``if passwords.verify(...)`` does the right thing.
    """

    ok: bool
    new_hash: str | None = None

    def __bool__(self) -> bool:
        return self.ok


_FAIL: Final = VerifyResult(ok=False)


# --- encoding helpers ---------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    """Decode canonical PHC B64 (no padding); raise ValueError otherwise."""
    if not re.fullmatch(_B64, text) or len(text) % 4 == 1:
        raise ValueError("not PHC base64")
    data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if _b64encode(data) != text:  # non-zero trailing bits
        raise ValueError("non-canonical base64")
    return data


def _check_length(password: str) -> None:
    if not isinstance(password, str):
        raise TypeError(f"password must be str, not {type(password).__name__}")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password longer than {MAX_PASSWORD_LENGTH} characters")


def _encode_current(password: str) -> bytes:
    """Password bytes for the current schemes: NFKC, then UTF-8."""
    _check_length(password)
    try:
        return unicodedata.normalize("NFKC", password).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("password is not valid Unicode text (lone surrogate)") from None


def _encode_legacy(password: str) -> bytes:
    """Password bytes for legacy digests: UTF-8 as typed, no normalisation."""
    _check_length(password)
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("password is not valid Unicode text (lone surrogate)") from None


def _pbkdf2_sm3(password: bytes, salt: bytes, iterations: int, dklen: int) -> bytes:
    return hashlib.pbkdf2_hmac("sm3", password, salt, iterations, dklen)


def _parse_pbkdf2(stored: str) -> tuple[int, bytes, bytes]:
    m = _PBKDF2_RE.fullmatch(stored)
    if m is None:
        raise ValueError("malformed pbkdf2-sm3 hash")
    iterations = int(m.group(1))
    salt, key = _b64decode(m.group(2)), _b64decode(m.group(3))
    if iterations > MAX_PBKDF2_ITERATIONS:
        raise ValueError("pbkdf2-sm3 iteration count out of range")
    if not 8 <= len(salt) <= 64 or not 16 <= len(key) <= 64:
        raise ValueError("pbkdf2-sm3 salt or key length out of range")
    return iterations, salt, key


def _legacy_digest(stored: str, password: str) -> tuple[bytes, bytes] | None:
    """(computed, expected) digests for a legacy md5/sha1/sha256 string, or None."""
    for prefix, (algorithm, digits) in _LEGACY_UNSALTED.items():
        if stored.startswith(prefix):
            hexdigest = stored[len(prefix) :]
            if len(hexdigest) != digits or not re.fullmatch(r"[0-9a-fA-F]+", hexdigest):
                raise ValueError(f"malformed {prefix} hash")
            computed = hashlib.new(algorithm, _encode_legacy(password)).digest()
            return computed, bytes.fromhex(hexdigest)
    m = _LEGACY_SALTED_RE.fullmatch(stored)
    if m is None:
        return None
    salt = _b64decode(m.group(2))
    pw = _encode_legacy(password)
    message = pw + salt if m.group(1) else salt + pw
    return hashlib.sha256(message).digest(), bytes.fromhex(m.group(3))


# --- how many hashes run at once --------------------------------------------------------
#
# argon2id is memory-hard: each verification streams 19 MiB through the CPU caches. With
# more verifications in flight than cores (a web worker's thread pool runs one per
# concurrent sign-in), they evict each other's memory and the OS switches between them:
# measured here, 8 at once on 2 cores cost 24-25 ms of CPU each instead of 18-20 ms, and
# fewer logins got through. So a process runs at most ``slots`` hashes at a time and the
# other sign-ins wait their turn. Auto (0): the cores this process may use divided by the
# number of web worker processes (``WEB_CONCURRENCY``, set by ``idp serve --workers``).
# The bound also caps the memory a flood of sign-ins can take (slots x 19 MiB).


def auto_slots() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    workers = os.environ.get("WEB_CONCURRENCY", "")
    per_worker = (cores or os.cpu_count() or 1) // max(1, int(workers) if workers.isdigit()
                                                          else 1)
    return max(1, per_worker)


def limit_concurrency(slots: int = 0) -> int:
    """Run at most ``slots`` hashes at once in this process (0: :func:`auto_slots`)."""
    global _gate
    count = slots if slots > 0 else auto_slots()
    _gate = threading.BoundedSemaphore(count)
    return count


_gate = threading.BoundedSemaphore(auto_slots())  # the app sets it again from its settings

HASH_CPU = Counter("idp_password_hash_cpu_seconds", "CPU time spent hashing and verifying "
                   "passwords (the thread's own CPU, waiting for a slot excluded)")
HASHES = Counter("idp_password_hashes", "Password hashes computed or verified")


@contextmanager
def _hashing() -> Iterator[None]:
    """One hash at a time per slot (see above), its CPU counted in :data:`HASH_CPU`:
    what the service spends on passwords, apart from everything else it does."""
    with _gate:
        began = time.thread_time()
        try:
            yield
        finally:
            HASH_CPU.inc(time.thread_time() - began)
            HASHES.inc()


# --- the hasher ------------------------------------------------------------------------


class Passwords:
    """Hash and verify passwords; see the module docstring for formats and choices.

    Construction hashes a random password once (the :meth:`dummy_verify` target), so it
    costs one hash: build one instance per process and share it (it is thread-safe).

    >>> pw = Passwords()
    >>> stored = pw.hash("correct horse")
    >>> result = pw.verify(stored, "correct horse")
    >>> result.ok, result.new_hash
    (True, None)
    """

    def __init__(
        self,
        scheme: Scheme = "argon2id",
        *,
        argon2_time_cost: int = DEFAULT_ARGON2_TIME_COST,
        argon2_memory_cost: int = DEFAULT_ARGON2_MEMORY_COST,
        argon2_parallelism: int = DEFAULT_ARGON2_PARALLELISM,
        pbkdf2_iterations: int = DEFAULT_PBKDF2_ITERATIONS,
    ) -> None:
        if scheme not in ("argon2id", "pbkdf2-sm3"):
            raise ValueError(f"unknown password scheme {scheme!r}")
        if isinstance(pbkdf2_iterations, bool) or not isinstance(pbkdf2_iterations, int):
            raise TypeError("pbkdf2_iterations must be int")
        if not MIN_PBKDF2_ITERATIONS <= pbkdf2_iterations <= MAX_PBKDF2_ITERATIONS:
            raise ValueError(
                f"pbkdf2_iterations must be in [{MIN_PBKDF2_ITERATIONS}, {MAX_PBKDF2_ITERATIONS}]"
            )
        if scheme == "pbkdf2-sm3" and "sm3" not in hashlib.algorithms_available:
            raise RuntimeError("this OpenSSL build has no SM3; pbkdf2-sm3 is unavailable")
        self.scheme: Scheme = scheme
        self.pbkdf2_iterations = pbkdf2_iterations
        # Also used to verify argon2 hashes when the configured scheme is pbkdf2-sm3:
        # argon2 verification takes its parameters from the stored string.
        self._argon2 = argon2.PasswordHasher(
            time_cost=argon2_time_cost,
            memory_cost=argon2_memory_cost,
            parallelism=argon2_parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self._dummy_hash = self.hash(secrets.token_urlsafe(16))

    # -- hashing --

    def hash(self, password: str) -> str:
        """Hash ``password`` with the configured scheme.

        Raises TypeError for a non-str and ValueError for a password longer than
        :data:`MAX_PASSWORD_LENGTH` characters or containing lone surrogates.
        """
        pw = _encode_current(password)
        if self.scheme == "argon2id":
            with _hashing():
                return self._argon2.hash(pw)
        salt = secrets.token_bytes(PBKDF2_SALT_BYTES)
        with _hashing():
            key = _pbkdf2_sm3(pw, salt, self.pbkdf2_iterations, PBKDF2_KEY_BYTES)
        return f"{_PBKDF2_PREFIX}i={self.pbkdf2_iterations}${_b64encode(salt)}${_b64encode(key)}"

    # -- verification --

    def verify(self, stored: str | None, password: str) -> VerifyResult:
        """Check ``password`` against ``stored``.

        Returns ``ok=False`` (never raises) for a wrong password, an over-long password,
        or a stored value that is empty, ``None``, malformed or of an unknown scheme.
        When ``ok`` and the stored hash is outdated, ``new_hash`` holds its replacement.
        Raises TypeError only if ``password`` is not a str.
        """
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        if len(password) > MAX_PASSWORD_LENGTH:
            return _FAIL
        if not isinstance(stored, str):
            self._pad()
            return _FAIL
        try:
            ok, needs_rehash = self._verify(stored, password)
        except ValueError:  # malformed stored value or unencodable password
            self._pad()
            return _FAIL
        if not ok:
            return _FAIL
        return VerifyResult(ok=True, new_hash=self.hash(password) if needs_rehash else None)

    def dummy_verify(self, password: str) -> VerifyResult:
        """Spend the time of a real verification, for an unknown account.

        Always returns ``ok=False``, so it can stand in for :meth:`verify`::

            result = pw.verify(user.password_hash, p) if user else pw.dummy_verify(p)
        """
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        if len(password) <= MAX_PASSWORD_LENGTH:  # mirror verify()'s early exit
            try:
                self._verify(self._dummy_hash, password)
            except ValueError:  # unencodable password: verify() would pad
                self._pad()
        return _FAIL

    def _pad(self) -> None:
        """Burn one configured-scheme verification (timing equaliser)."""
        self._verify(self._dummy_hash, "")  # well formed by construction: cannot raise

    def _verify(self, stored: str, password: str) -> tuple[bool, bool]:
        """Return (ok, needs_rehash); raise ValueError for malformed input."""
        if stored.startswith(_ARGON2_PREFIXES):
            try:
                encoded = _encode_current(password)
                with _hashing():
                    self._argon2.verify(stored, encoded)
            except VerifyMismatchError:
                return False, False
            except (VerificationError, InvalidHashError) as exc:  # undecodable stored value
                raise ValueError("malformed argon2 hash") from exc
            return True, self.scheme != "argon2id" or self._argon2.check_needs_rehash(stored)

        if stored.startswith(_PBKDF2_PREFIX):
            iterations, salt, key = _parse_pbkdf2(stored)
            encoded = _encode_current(password)
            with _hashing():
                computed = _pbkdf2_sm3(encoded, salt, iterations, len(key))
            if not hmac.compare_digest(computed, key):
                return False, False
            outdated = (
                self.scheme != "pbkdf2-sm3"
                or iterations < self.pbkdf2_iterations
                or len(salt) < PBKDF2_SALT_BYTES
                or len(key) < PBKDF2_KEY_BYTES
            )
            return True, outdated

        if stored.startswith("$2"):
            m = _BCRYPT_RE.fullmatch(stored)
            if m is None or not 4 <= int(m.group(1)) <= MAX_BCRYPT_COST:
                raise ValueError("malformed or unsupported bcrypt hash")
            pw = _encode_legacy(password)[:BCRYPT_MAX_PASSWORD_BYTES]
            return bcrypt.checkpw(pw, stored.encode("ascii")), True

        digests = _legacy_digest(stored, password)
        if digests is None:
            raise ValueError("unknown password hash scheme")
        computed, expected = digests
        ok = hmac.compare_digest(computed, expected)
        self._pad()  # a bare digest is ~1000x faster than a real verification
        return ok, True


# --- import of legacy hashes -----------------------------------------------------------

_IMPORT_KINDS: Final = ("md5", "sha1", "sha256", "sha256-ps", "bcrypt")


def import_legacy_hash(kind: str, value: str, salt: str | bytes | None = None) -> str:
    """Turn one row of an import file into the stored legacy format.

    ``kind``: ``"md5"`` (unsalted MD5), ``"sha1"`` (unsalted SHA-1), ``"sha256"``
    (``sha256(salt + password)``), ``"sha256-ps"`` (``sha256(password + salt)``) or
    ``"bcrypt"`` (a ``$2a$``/``$2b$``/``$2y$`` string, cost 4..16).
    ``value``: the hex digest (either case) or the bcrypt string; surrounding
    whitespace is ignored. ``salt``: required (non-empty) for the sha256 kinds and
    forbidden otherwise. A ``str`` salt is used as its UTF-8 bytes, i.e. the old system
    concatenated text; pass ``bytes`` if it concatenated raw bytes (e.g. a hex salt column
    that the old code decoded before hashing: ``bytes.fromhex(column)``).

    Raises ValueError with the reason when anything is malformed.

    >>> import_legacy_hash("md5", "5F4DCC3B5AA765D61D8327DEB882CF99")
    '$legacy-md5$5f4dcc3b5aa765d61d8327deb882cf99'
    >>> import_legacy_hash("sha256", "00" * 32, salt="ab")
    '$legacy-sha256$YWI$0000000000000000000000000000000000000000000000000000000000000000'
    """
    if not isinstance(kind, str) or kind not in _IMPORT_KINDS:
        # not the kind read: a password typed into the column would be echoed
        raise ValueError(f"unknown legacy hash kind; expected one of {', '.join(_IMPORT_KINDS)}")
    if not isinstance(value, str):
        raise ValueError(f"{kind} value must be a str, not {type(value).__name__}")
    value = value.strip()
    salted = kind in ("sha256", "sha256-ps")
    salt_bytes = b""
    if salted:
        if isinstance(salt, str):
            try:
                salt_bytes = salt.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{kind} salt is not valid Unicode text") from None
        elif isinstance(salt, bytes):
            salt_bytes = salt
        elif salt is not None:
            raise ValueError(f"{kind} salt must be str or bytes, not {type(salt).__name__}")
        if not salt_bytes:
            raise ValueError(f"{kind} requires a non-empty salt")
    elif salt is not None:
        raise ValueError(f"{kind} hashes take no salt")

    if kind == "bcrypt":
        m = _BCRYPT_RE.fullmatch(value)
        if m is None:
            raise ValueError("bcrypt value must look like $2a$/$2b$/$2y$<cost>$<53 chars>")
        cost = int(m.group(1))
        if not 4 <= cost <= MAX_BCRYPT_COST:
            raise ValueError(f"bcrypt cost {cost} outside the accepted range 4..{MAX_BCRYPT_COST}")
        return value

    digits = {"md5": 32, "sha1": 40}.get(kind, 64)
    if len(value) != digits or not re.fullmatch(r"[0-9a-fA-F]+", value):
        raise ValueError(f"{kind} value must be {digits} hex digits, got {len(value)} chars")
    hexdigest = value.lower()
    if kind in ("md5", "sha1"):
        return f"$legacy-{kind}${hexdigest}"
    return f"$legacy-{kind}${_b64encode(salt_bytes)}${hexdigest}"
