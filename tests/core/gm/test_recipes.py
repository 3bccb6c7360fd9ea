"""The verification recipes of docs/sm2-jose.md, run against tokens we sign.

Each recipe under tests/interop/recipes/ is a complete program that takes a
compact JWS and a JWK (JSON) on its command line, prints ``valid`` and the
payload (exit 0) or ``invalid: <reason>`` (exit 1). Here every recipe that can
run on this machine verifies ID-token-like JWS signed by ``core.gm.jose`` —
including keys and signatures with leading zero bytes, where padding bugs live —
and rejects tampered, mis-sized, out-of-range, wrong-key, wrong-ID and
wrong-``alg`` tokens. The doc quotes every recipe verbatim; a test keeps the two
in sync, and another checks the doc's worked example.

Peers (installed by ``scripts/install-peers.sh``): gmssl (PyPI, in the venv),
node + sm-crypto (tests/interop, ``npm ci``), openssl + jq, javac + Debian
``libbcprov-java``, go + Debian ``golang-github-tjfoc-gmsm-dev``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from core.gm.jose import (
    SM2Key,
    sign_jws,
    sm2_jwk_from_key,
    sm2_jwk_thumbprint,
    sm3_half_hash,
    verify_jws,
)
from core.gm.sm2 import N, SM2PrivateKey, signature_to_der

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[3]
INTEROP_DIR = REPO / "tests" / "interop"
RECIPES_DIR = INTEROP_DIR / "recipes"
DOC = REPO / "docs" / "sm2-jose.md"
BCPROV = Path("/usr/share/java/bcprov.jar")
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put sources
TJFOC = GOPATH / "src" / "github.com" / "tjfoc" / "gmsm" / "sm2"
ACCESS_TOKEN = "SlAV32hkKG"

Run = Callable[[str, dict], subprocess.CompletedProcess[str]]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- tokens


def id_token_claims() -> dict:
    now = int(time.time())
    return {
        "iss": "https://id.edu.example",
        "sub": "t-0042",
        "aud": "school-portal",
        "exp": now + 300,
        "iat": now,
        "nonce": "n-0S6_WzA2Mj",
        "at_hash": sm3_half_hash(ACCESS_TOKEN),
        "name": "王老师",  # non-ASCII payloads are UTF-8 JSON inside base64url
    }


def payload_bytes(claims: dict) -> bytes:
    return json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()


def key_where(predicate: Callable[[SM2PrivateKey], bool]) -> SM2Key:
    while True:
        raw = SM2PrivateKey.generate()
        if predicate(raw):
            return SM2Key.import_key(raw)


def signed(key: SM2Key, claims: dict, want: Callable[[bytes], bool] = lambda sig: True) -> str:
    """An ID token from ``sign_jws``; re-signed (fresh k) until ``want(signature)``."""
    kid = sm2_jwk_thumbprint(key.public_key)
    while True:
        token = sign_jws(payload_bytes(claims), key, {"kid": kid, "typ": "JWT"})
        if want(unb64(token.split(".")[2])):
            return token


def jwk_of(key: SM2Key) -> dict:
    return sm2_jwk_from_key(key.public_key)


def raw_sm2_jws(key: SM2Key, header: dict, payload: bytes, uid: bytes | None = None) -> str:
    """A JWS with any header, carrying a genuine SM2 signature over its signing input."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    private = key.private_key
    assert private is not None
    signature = (
        private.sign(signing_input.encode())
        if uid is None
        else private.sign(signing_input.encode(), uid=uid)
    )
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture(scope="module")
def signing_key() -> SM2Key:
    return SM2Key.generate_key(private=True)


@pytest.fixture(scope="module")
def valid_cases(signing_key: SM2Key) -> dict[str, tuple[str, dict, bytes]]:
    """name -> (token, jwk, expected payload) for tokens every recipe must accept."""
    claims = id_token_claims()
    x0 = key_where(lambda k: k.public_key.xy_bytes()[0][0] == 0)
    y0 = key_where(lambda k: k.public_key.xy_bytes()[1][0] == 0)
    cases = {
        "id_token": (signed(signing_key, claims), jwk_of(signing_key)),
        "x_leading_zero_key": (signed(x0, claims), jwk_of(x0)),
        "y_leading_zero_key": (signed(y0, claims), jwk_of(y0)),
        "r_leading_zero": (signed(signing_key, claims, lambda s: s[0] == 0), jwk_of(signing_key)),
        "s_leading_zero": (signed(signing_key, claims, lambda s: s[32] == 0), jwk_of(signing_key)),
    }
    result = {name: (token, jwk, payload_bytes(claims)) for name, (token, jwk) in cases.items()}
    example_token, example_jwk = doc_example()
    result["doc_example"] = (example_token, example_jwk, unb64(example_token.split(".")[1]))
    for token, jwk, payload in result.values():  # our own verifier agrees
        assert verify_jws(token, SM2Key.import_key(jwk)) == payload
    return result


def tamper_payload(token: str) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(unb64(body))
    claims["sub"] = "t-0043"
    return f"{head}.{b64(payload_bytes(claims))}.{sig}"


def with_signature(token: str, signature: bytes) -> str:
    head, body, _ = token.split(".")
    return f"{head}.{body}.{b64(signature)}"


def signature_of(token: str) -> bytes:
    return unb64(token.split(".")[2])


# case -> what the recipe's "invalid: <reason>" must mention
REJECTED = {
    "tampered_payload": "bad signature",
    "signature_65_bytes": "64 bytes",
    "signature_63_bytes": "64 bytes",
    "signature_der": "64 bytes",
    "r_zero": "out of range",
    "s_equals_n": "out of range",
    "other_key": "bad signature",
    "other_user_id": "bad signature",
    "alg_none": "alg",
    "alg_ES256": "alg",
    "kid_mismatch": "kid",
}


@pytest.fixture(scope="module")
def rejected_cases(signing_key: SM2Key) -> dict[str, tuple[str, dict]]:
    """name -> (token, jwk) for tokens every recipe must refuse."""
    jwk = jwk_of(signing_key)
    token = signed(signing_key, id_token_claims())
    sig = signature_of(token)
    payload = payload_bytes(id_token_claims())
    kid = jwk["kid"]
    cases = {
        "tampered_payload": tamper_payload(token),
        "signature_65_bytes": with_signature(token, sig + b"\x00"),
        "signature_63_bytes": with_signature(token, sig[:63]),
        "signature_der": with_signature(token, signature_to_der(sig)),
        "r_zero": with_signature(token, bytes(32) + sig[32:]),
        "s_equals_n": with_signature(token, sig[:32] + N.to_bytes(32, "big")),
        "other_key": token,
        "other_user_id": raw_sm2_jws(
            signing_key, {"alg": "SM2", "kid": kid}, payload, uid=b"teacher-0042@edu.example"
        ),
        # A genuine SM2 signature under a header that names another alg: the
        # recipes must refuse the alg, not only check the signature.
        "alg_none": raw_sm2_jws(signing_key, {"alg": "none", "kid": kid}, payload),
        "alg_ES256": raw_sm2_jws(signing_key, {"alg": "ES256", "kid": kid}, payload),
        "kid_mismatch": raw_sm2_jws(signing_key, {"alg": "SM2", "kid": "another-key"}, payload),
    }
    # Another key under the token's kid: only the signature check can refuse it.
    other = {**jwk_of(SM2Key.generate_key(private=True)), "kid": kid}
    assert set(cases) == set(REJECTED)
    return {name: (tok, other if name == "other_key" else jwk) for name, tok in cases.items()}


# --------------------------------------------------------------------------- recipes


def need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed ({why}); scripts/install-peers.sh installs it")
    return path


def runner(command: list[str], env: dict[str, str] | None = None) -> Run:
    def run(token: str, jwk: dict) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, token, json.dumps(jwk)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
            env=env,
        )

    return run


def ensure_sm_crypto() -> str:
    node = need("node", "the sm-crypto recipe runs in node")
    if not (INTEROP_DIR / "node_modules" / "sm-crypto").is_dir():
        npm = need("npm", "installs tests/interop's pinned sm-crypto")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=INTEROP_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )
    return node


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    javac = need("javac", "compiles the Bouncy Castle recipe")
    need("java", "runs the Bouncy Castle recipe")
    if not BCPROV.is_file():
        pytest.skip(f"{BCPROV} is missing: install Debian libbcprov-java (install-peers.sh)")
    out = tmp_path_factory.mktemp("java")
    subprocess.run(
        [javac, "-cp", str(BCPROV), "-d", str(out), str(RECIPES_DIR / "VerifySM2.java")],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = need("go", "builds the tjfoc/gmsm recipe")
    if not TJFOC.is_dir():
        pytest.skip(f"{TJFOC} is missing: install Debian golang-github-tjfoc-gmsm-dev")
    out = tmp_path_factory.mktemp("go")
    # GOPATH mode against Debian's packaged sources: no module proxy, no network.
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(out / "cache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
    }
    build = subprocess.run(
        [go, "build", "-o", str(out / "verify"), str(RECIPES_DIR / "verify.go")],
        env=env,
        cwd=out,
        timeout=300,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    return out / "verify"


RECIPE_NAMES = ["gmssl", "sm_crypto", "openssl", "bouncy_castle", "bouncy_castle_der", "go_tjfoc"]


@pytest.fixture(scope="module", params=RECIPE_NAMES)
def recipe(request: pytest.FixtureRequest) -> Run:
    name = request.param
    if name == "gmssl":
        return runner([sys.executable, str(RECIPES_DIR / "verify_gmssl.py")])
    if name == "sm_crypto":
        return runner([ensure_sm_crypto(), str(RECIPES_DIR / "verify_sm_crypto.mjs")])
    if name == "openssl":
        need("openssl", "the openssl recipe")
        need("jq", "the openssl recipe reads JSON with jq")
        return runner([need("bash", "runs the recipe"), str(RECIPES_DIR / "verify_openssl.sh")])
    if name in ("bouncy_castle", "bouncy_castle_der"):
        classes = request.getfixturevalue("java_classes")
        java = need("java", "runs the Bouncy Castle recipe")
        der = ["--der"] if name == "bouncy_castle_der" else []
        return runner([java, "-cp", f"{BCPROV}{os.pathsep}{classes}", "VerifySM2", *der])
    if name == "go_tjfoc":
        return runner([str(request.getfixturevalue("go_binary"))])
    raise AssertionError(name)


VALID = [
    "id_token",
    "x_leading_zero_key",
    "y_leading_zero_key",
    "r_leading_zero",
    "s_leading_zero",
    "doc_example",
]


@pytest.mark.parametrize("case", VALID)
def test_recipe_accepts_our_id_token(recipe: Run, valid_cases: dict, case: str) -> None:
    token, jwk, payload = valid_cases[case]
    result = recipe(token, jwk)
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0] == "valid"
    assert json.loads(lines[1]) == json.loads(payload)


@pytest.mark.parametrize("case", REJECTED)
def test_recipe_rejects(recipe: Run, rejected_cases: dict, case: str) -> None:
    token, jwk = rejected_cases[case]
    result = recipe(token, jwk)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout.startswith("invalid: "), (result.stdout, result.stderr)
    assert REJECTED[case] in result.stdout, result.stdout  # refused for the right reason


# --------------------------------------------------------------------------- RP libraries


def test_rp_library_behaviour_stated_in_the_doc() -> None:
    """Section 2's table: what Python RP libraries do with a JWKS holding an SM2 key.

    (npm jose is covered by tests/core/test_signing_keys.py.)
    """
    import jwt as pyjwt
    from authlib.integrations.base_client.sync_openid import OpenIDMixin
    from joserfc import jwt as joserfc_jwt
    from joserfc.jwk import ECKey, KeySet
    from jwcrypto import jwk as jwcrypto_jwk
    from jwcrypto import jwt as jwcrypto_jwt

    es256 = ECKey.generate_key("P-256", private=True)
    es256_public = {**es256.as_dict(private=False), "kid": es256.thumbprint(), "alg": "ES256"}
    sm2_public = jwk_of(SM2Key.generate_key(private=True))
    everything = {"keys": [sm2_public, es256_public]}
    standard = {"keys": [es256_public]}
    claims = {**id_token_claims(), "aud": "c1"}
    token = joserfc_jwt.encode({"alg": "ES256", "kid": es256_public["kid"]}, claims, es256)

    # joserfc 1.8: the whole set is rejected; the standard set works.
    with pytest.raises(KeyError):
        KeySet.import_key_set(everything)
    assert joserfc_jwt.decode(token, KeySet.import_key_set(standard)).claims["sub"] == "t-0042"

    # Authlib's OpenID Connect client (on joserfc): same.
    class Client(OpenIDMixin):
        client_id = "c1"

        def __init__(self, jwks: dict) -> None:
            self.jwks = jwks

        def load_server_metadata(self) -> dict:
            return {
                "issuer": claims["iss"],
                "id_token_signing_alg_values_supported": ["SM2", "ES256"],
            }

        def fetch_jwk_set(self, force: bool = False) -> dict:
            return self.jwks

    with pytest.raises(KeyError):
        Client(everything).parse_id_token({"id_token": token}, nonce=claims["nonce"])
    userinfo = Client(standard).parse_id_token({"id_token": token}, nonce=claims["nonce"])
    assert userinfo["sub"] == "t-0042"

    # Authlib's deprecated authlib.jose imports the set.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.jose import JsonWebKey

        legacy = JsonWebKey.import_key_set(everything)
    assert {k.kid for k in legacy.keys} == {sm2_public["kid"], es256_public["kid"]}

    # PyJWT: the SM2 key is skipped; a set of SM2 keys only has no usable key.
    assert [k.key_id for k in pyjwt.PyJWKSet.from_dict(everything).keys] == [es256_public["kid"]]
    with pytest.raises(pyjwt.PyJWKSetError):
        pyjwt.PyJWKSet.from_dict({"keys": [sm2_public]})

    # jwcrypto: the set imports with the SM2 key in it; only using that key fails.
    key_set = jwcrypto_jwk.JWKSet.from_json(json.dumps(everything))
    assert {k.get("kid") for k in key_set} == {sm2_public["kid"], es256_public["kid"]}
    verified = jwcrypto_jwt.JWT(jwt=token, key=key_set, algs=["ES256"])
    assert json.loads(verified.claims)["sub"] == "t-0042"
    with pytest.raises(jwcrypto_jwk.InvalidJWKValue):
        key_set.get_key(sm2_public["kid"]).get_op_key("verify")


# --------------------------------------------------------------------------- raw <-> DER


def load_sig_der() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sig_der", RECIPES_DIR / "sig_der.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sig_der_matches_our_conversion(valid_cases: dict) -> None:
    sig_der = load_sig_der()
    signatures = [signature_of(token) for token, _, _ in valid_cases.values()]
    signatures += [bytes(31) + b"\x01" + bytes(31) + b"\x02", b"\xff" * 64, b"\x00\x80" + bytes(62)]
    for raw in signatures:
        der = sig_der.raw_to_der(raw)
        assert der == signature_to_der(raw)
        assert sig_der.der_to_raw(der) == raw
    assert any(raw[0] == 0 for raw in signatures) and any(raw[32] == 0 for raw in signatures)


@pytest.mark.parametrize(
    "der",
    [
        "3006020101020102" + "00",  # a byte after the SEQUENCE
        "3007020101020102" + "00",  # a byte inside the SEQUENCE after s
        "30060201010201",  # truncated
        "3007020200010201" + "02",  # non-minimal INTEGER
        "3006020181020101",  # negative INTEGER
        "3006020101040101",  # OCTET STRING, not INTEGER
        "30050200020101",  # empty INTEGER
        "30260221" + "01" * 33 + "020101",  # INTEGER longer than 32 bytes
        "3106020101020101",  # SET, not SEQUENCE
    ],
)
def test_sig_der_rejects_malformed(der: str) -> None:
    with pytest.raises(ValueError):
        load_sig_der().der_to_raw(bytes.fromhex(der))


def test_sig_der_rejects_wrong_raw_length() -> None:
    for size in (63, 65):
        with pytest.raises(ValueError):
            load_sig_der().raw_to_der(bytes(size))


# --------------------------------------------------------------------------- the doc


FILE_BLOCK = re.compile(
    r"<!-- recipe: (?P<path>[^ ]+) -->\n```[a-z]*\n(?P<body>.*?)```\n", re.DOTALL
)
EXAMPLE_BLOCK = re.compile(
    r"<!-- example: (?P<name>[a-z_]+) -->\n```[a-z]*\n(?P<body>.*?)```\n", re.DOTALL
)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_example() -> tuple[str, dict]:
    blocks = {m["name"]: m["body"] for m in EXAMPLE_BLOCK.finditer(doc_text())}
    return blocks["token"].strip(), json.loads(blocks["jwk"])


def test_doc_quotes_every_recipe_verbatim() -> None:
    quoted = {m["path"]: m["body"] for m in FILE_BLOCK.finditer(doc_text())}
    files = {str(path.relative_to(REPO)) for path in RECIPES_DIR.iterdir() if path.is_file()}
    assert set(quoted) == files, "docs/sm2-jose.md must quote each file of tests/interop/recipes"
    for path, body in quoted.items():
        assert body == (REPO / path).read_text(encoding="utf-8"), f"{path} differs from the doc"


def test_doc_example_is_consistent() -> None:
    token, jwk = doc_example()
    assert jwk["kid"] == sm2_jwk_thumbprint(jwk)  # RFC 7638 over crv, kty, x, y
    assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "EC",
        "crv": "SM2",
        "alg": "SM2",
        "use": "sig",
    }
    header = json.loads(unb64(token.split(".")[0]))
    assert header["alg"] == "SM2" and header["kid"] == jwk["kid"]
    claims = json.loads(verify_jws(token, SM2Key.import_key(jwk)))
    assert claims["at_hash"] == sm3_half_hash(ACCESS_TOKEN)
    assert f"`{ACCESS_TOKEN}`" in doc_text() and f"`{claims['at_hash']}`" in doc_text()
