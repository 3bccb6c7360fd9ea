#!/usr/bin/env bash
# Verify an SM2-signed JWS (alg "SM2") with the openssl 3 command line and jq;
# fetches nothing.
# usage: verify_openssl.sh TOKEN JWK_JSON
# Prints "valid" and the payload, exit 0; or "invalid: <reason>", exit 1.
set -euo pipefail
export LC_ALL=C
token=$1 jwk=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
invalid() { echo "invalid: $*"; exit 1; }

b64url_decode() {  # base64url without padding -> bytes on stdout
  local s=${1//-/+}
  s=${s//_//}
  case $((${#s} % 4)) in 2) s+="==" ;; 3) s+="=" ;; 1) return 1 ;; esac
  printf '%s' "$s" | base64 -d
}
hex() { od -An -tx1 -v "$@" | tr -d ' \n'; }

[[ $token =~ ^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]+)$ ]] \
  || invalid "not a compact JWS"
head=${BASH_REMATCH[1]} payload=${BASH_REMATCH[2]} sig=${BASH_REMATCH[3]}

header=$(b64url_decode "$head") || invalid "header is not base64url"
alg=$(jq -r '.alg' <<<"$header") || invalid "header is not JSON"
[ "$alg" = "SM2" ] || invalid "alg $alg is not SM2"  # never "none", never another alg
kid=$(jq -r '.kid // empty' <<<"$header")
[ -z "$kid" ] || [ "$kid" = "$(jq -r '.kid // empty' <<<"$jwk")" ] \
  || invalid "kid does not match the JWK"

# JWK x, y -> SubjectPublicKeyInfo DER: a fixed 27-byte prefix
# (id-ecPublicKey, curve 1.2.156.10197.1.301, BIT STRING, 04) then x || y.
[ "$(jq -r '.kty + " " + .crv' <<<"$jwk")" = "EC SM2" ] || invalid "not an SM2 JWK"
b64url_decode "$(jq -r '.x' <<<"$jwk")" >"$work/x" || invalid "x is not base64url"
b64url_decode "$(jq -r '.y' <<<"$jwk")" >"$work/y" || invalid "y is not base64url"
[ "$(wc -c <"$work/x")" -eq 32 ] && [ "$(wc -c <"$work/y")" -eq 32 ] \
  || invalid "JWK x and y must be 32 bytes each"
{
  printf '\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01'
  printf '\x06\x08\x2a\x81\x1c\xcf\x55\x01\x82\x2d\x03\x42\x00\x04'
  cat "$work/x" "$work/y"
} >"$work/pub.der"
# openssl rejects a point that is not on the curve here.
openssl pkey -pubin -inform DER -in "$work/pub.der" -out "$work/pub.pem" 2>/dev/null \
  || invalid "JWK is not a point on the SM2 curve"

# Raw r || s (exactly 64 bytes, 1 <= r, s < n) -> DER SEQUENCE { INTEGER r, INTEGER s }.
b64url_decode "$sig" >"$work/sig.raw" || invalid "signature is not base64url"
[ "$(wc -c <"$work/sig.raw")" -eq 64 ] || invalid "signature must be exactly 64 bytes (r || s)"
r=$(hex -N32 "$work/sig.raw") s=$(hex -j32 "$work/sig.raw")
n=fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123
zero=$(printf '0%.0s' {1..64})
[[ $r > $zero && $r < $n && $s > $zero && $s < $n ]] || invalid "r or s out of range"
printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "$r" "$s" >"$work/sig.cnf"
openssl asn1parse -genconf "$work/sig.cnf" -out "$work/sig.der" -noout >/dev/null

# SM2 with SM3 over Z_A || JWS Signing Input; OpenSSL 3 needs the ID spelled out.
printf '%s.%s' "$head" "$payload" >"$work/input"
openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:1234567812345678 \
  -pubin -inkey "$work/pub.pem" -sigfile "$work/sig.der" -in "$work/input" >/dev/null 2>&1 \
  || invalid "bad signature"
echo "valid"
b64url_decode "$payload"
echo
