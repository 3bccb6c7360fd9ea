"""Verify an SM2-signed JWS (alg "SM2") with PyPI gmssl; fetches nothing.

usage: python verify_gmssl.py TOKEN JWK_JSON
Prints "valid" and the payload, exit 0; or "invalid: <reason>", exit 1.
"""

import base64
import json
import sys

from gmssl import sm2

# GB/T 32918.5 curve: prime p, coefficients a and b, order n.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(token: str, jwk: dict) -> bytes:
    """The payload of a valid token; ValueError otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header = json.loads(b64url(parts[0]))
    if header.get("alg") != "SM2":  # never "none", never another alg
        raise ValueError(f"alg {header.get('alg')!r} is not SM2")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "SM2":
        raise ValueError("not an SM2 JWK")
    if "kid" in header and header["kid"] != jwk.get("kid"):
        raise ValueError("kid does not match the JWK")
    x, y = b64url(jwk["x"]), b64url(jwk["y"])
    if len(x) != 32 or len(y) != 32:
        raise ValueError("JWK x and y must be 32 bytes each")
    xi, yi = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    if xi >= P or yi >= P or (yi * yi - xi**3 - A * xi - B) % P:
        raise ValueError("JWK is not a point on the SM2 curve")
    signature = b64url(parts[2])
    # Pitfall: gmssl reads the first 64 bytes and ignores the rest, and does not
    # range-check r and s. Check both yourself.
    if len(signature) != 64:
        raise ValueError("signature must be exactly 64 bytes (r || s)")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < N and 1 <= s < N):
        raise ValueError("r or s out of range")
    # Pitfall: CryptSM2(public_key="04...") strips *every* leading "0"/"4"
    # character (str.lstrip), breaking keys whose x starts with those hex digits.
    # Pass an empty key and set the 128 hex digits x || y afterwards.
    crypt = sm2.CryptSM2(private_key=None, public_key="")
    crypt.public_key = x.hex() + y.hex()
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    try:
        # verify_with_sm3: e = SM3(Z_A || M) with the default ID 1234567812345678.
        ok = crypt.verify_with_sm3(signature.hex(), signing_input)
    except (TypeError, ValueError):  # gmssl fails on the point at infinity
        ok = False
    if not ok:
        raise ValueError("bad signature")
    return b64url(parts[1])


def main() -> int:
    token, jwk = sys.argv[1], json.loads(sys.argv[2])
    try:
        payload = verify(token, jwk)
    except (ValueError, KeyError) as error:
        print(f"invalid: {error}")
        return 1
    print("valid")
    print(payload.decode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
