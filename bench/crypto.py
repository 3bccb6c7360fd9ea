"""Crypto micro-benchmarks: operations per second on one core, single thread.

Not a test: it asserts nothing, it prints. Run from the repository root::

    .venv/bin/python bench/crypto.py [--seconds 1.0] [--no-openssl]

Every measurement is a ``(name, callable)`` pair in ``BENCHMARKS``; each callable
performs one operation. To add a line (argon2id, PBKDF2-SM3, ...), append to
``BENCHMARKS`` below the marked place. ``openssl speed sm2`` runs last so the
native SM2 backend can be compared with OpenSSL's own numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from core.gm.jose import sign_jws, sm3_half_hash
from core.gm.sm2 import SM2PrivateKey, active_backend, available_backends
from core.gm.sm3 import sm3
from core.gm.sm4 import sm4_gcm_encrypt

warnings.filterwarnings("ignore", message="EdDSA is deprecated")  # joserfc nags; we measure

Benchmark = tuple[str, Callable[[], object]]
MESSAGE = b"eyJhbGciOiJTTTIifQ." + b"x" * 400  # about the size of an ID token signing input
KIB = secrets.token_bytes(1024)


def id_token_claims() -> bytes:
    """Claims JSON of a typical ID token, built afresh as a real issuer would."""
    now = int(time.time())
    return json.dumps(
        {
            "iss": "https://idp.edu.example",
            "sub": "t-00421337",
            "aud": "school-portal",
            "exp": now + 300,
            "iat": now,
            "auth_time": now - 20,
            "nonce": "n-0S6_WzA2Mj",
            "at_hash": sm3_half_hash("SlAV32hkKG"),
            "acr": "urn:edu:loa:2",
            "amr": ["pwd", "otp"],
            "name": "张老师",
            "preferred_username": "zhang.teacher",
            "email": "zhang.teacher@edu.example",
            "school_id": "110108-0042",
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def sm2_benchmarks() -> list[Benchmark]:
    rows: list[Benchmark] = []
    for backend in available_backends():
        key = SM2PrivateKey.generate(backend=backend)
        signature = key.sign(MESSAGE)
        public = key.public_key
        rows.append((f"SM2 sign [{backend}]", lambda key=key: key.sign(MESSAGE)))
        rows.append(
            (
                f"SM2 verify [{backend}]",
                lambda public=public, signature=signature: public.verify(MESSAGE, signature),
            )
        )
    return rows


def jws_benchmarks() -> list[Benchmark]:
    sm2_key = SM2PrivateKey.generate()  # the active backend
    header = {"kid": "2025-01", "typ": "JWT"}
    rows: list[Benchmark] = [
        (
            f"SM2 ID-token JWS sign [{sm2_key.backend}]",
            lambda: sign_jws(id_token_claims(), sm2_key, header),
        )
    ]
    for alg, key in (
        ("ES256", ECKey.generate_key("P-256")),
        ("RS256", RSAKey.generate_key(2048)),
        ("EdDSA", OKPKey.generate_key("Ed25519")),
    ):
        rows.append(
            (
                f"{alg} ID-token JWS sign [joserfc]",
                lambda alg=alg, key=key: jws.serialize_compact(
                    {"alg": alg, **header}, id_token_claims(), key, algorithms=[alg]
                ),
            )
        )
    return rows


def symmetric_benchmarks() -> list[Benchmark]:
    key, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    return [
        ("SM3 1 KiB", lambda: sm3(KIB)),
        ("SM4-GCM encrypt 1 KiB", lambda: sm4_gcm_encrypt(key, nonce, KIB, b"aad")),
    ]


def password_benchmarks() -> list[Benchmark]:
    """One verification each, at the service's default parameters (core.passwords)."""
    from core.passwords import Passwords

    argon2, pbkdf2 = Passwords("argon2id"), Passwords("pbkdf2-sm3")
    argon2_hash, pbkdf2_hash = argon2.hash("correct horse"), pbkdf2.hash("correct horse")
    return [
        ("argon2id verify (19 MiB, t=2, p=1)", lambda: argon2.verify(argon2_hash, "x")),
        ("pbkdf2-sm3 verify (100,000 iterations)", lambda: pbkdf2.verify(pbkdf2_hash, "x")),
    ]


def key_ring_benchmarks() -> list[Benchmark]:
    """A whole ID token through the service's own KeyRing.sign (JSON, header, signature),
    with keys stored, sealed and loaded as in production (temporary SQLite database)."""
    import tempfile

    from core import migrate
    from core.db import Database
    from core.settings import load_settings
    from core.signing_keys import KeyRing, ensure_keys

    var = tempfile.mkdtemp(prefix="bench-keys-")
    settings = load_settings({"IDP_VAR_DIR": var})
    database = Database(settings)
    migrate.upgrade(database.engine)
    with database.session() as session:
        ensure_keys(session, settings)
    ring = KeyRing(settings, database.sessions)
    claims = json.loads(id_token_claims())
    return [(f"{alg} ID token via KeyRing.sign", lambda alg=alg: ring.sign(claims, alg))
            for alg in ("SM2", "RS256", "ES256", "EdDSA")]


BENCHMARKS: list[Benchmark] = [
    *sm2_benchmarks(), *jws_benchmarks(), *key_ring_benchmarks(), *symmetric_benchmarks(),
    *password_benchmarks(),
]


def ops_per_second(operation: Callable[[], object], seconds: float) -> float:
    operation()  # warm caches (native key objects, imports)
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        operation()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


_SPEED_LINE = re.compile(
    r"SM2 \(CurveSM2\)\s+[\d.]+s\s+[\d.]+s\s+(?P<sign>[\d.]+)\s+(?P<verify>[\d.]+)"
)


def openssl_speed_sm2(seconds: int) -> tuple[float, float] | str:
    """(sign/s, verify/s) from ``openssl speed``, or why it could not be measured."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "openssl is not on PATH"
    for extra in ([], ["-evp"]):
        command = [openssl, "speed", "-seconds", str(seconds), *extra, "sm2"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        match = _SPEED_LINE.search(result.stdout)
        if match:
            return float(match["sign"]), float(match["verify"])
    return "`openssl speed sm2` printed no SM2 result on this OpenSSL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per line")
    parser.add_argument("--no-openssl", action="store_true", help="skip `openssl speed`")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, stated plainly

    print(f"single thread, one core; active SM2 backend: {active_backend()}")
    print(f"{'operation':<40} {'ops/s':>12}")
    results: dict[str, float] = {}
    for name, operation in BENCHMARKS:
        results[name] = ops_per_second(operation, args.seconds)
        print(f"{name:<40} {results[name]:>12,.0f}", flush=True)

    if args.no_openssl:
        return
    speed = openssl_speed_sm2(seconds=3)
    if isinstance(speed, str):
        print(f"openssl speed sm2: skipped ({speed})")
        return
    sign, verify = speed
    print(f"{'openssl speed sm2: sign':<40} {sign:>12,.0f}")
    print(f"{'openssl speed sm2: verify':<40} {verify:>12,.0f}")
    native_sign = results.get("SM2 sign [tongsuo]")
    native_verify = results.get("SM2 verify [tongsuo]")
    if native_sign and native_verify:
        print(
            f"ratio native/openssl: sign {native_sign / sign:.2f}, "
            f"verify {native_verify / verify:.2f}"
        )


if __name__ == "__main__":
    main()
