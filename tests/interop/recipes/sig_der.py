"""JWS "SM2" signature (raw 64-byte r || s) <-> DER SEQUENCE { INTEGER r, INTEGER s }.

For peers that only speak DER (OpenSSL, SM2Signer's default, Go's ASN.1 APIs).
No dependencies; der_to_raw accepts only strict DER of two 1..32-byte values.
"""


def _der_int(value: bytes) -> bytes:
    value = value.lstrip(b"\x00") or b"\x00"  # minimal big-endian form
    if value[0] & 0x80:  # keep INTEGER positive
        value = b"\x00" + value
    return b"\x02" + bytes([len(value)]) + value


def raw_to_der(signature: bytes) -> bytes:
    if len(signature) != 64:
        raise ValueError("raw SM2 signature must be 64 bytes")
    body = _der_int(signature[:32]) + _der_int(signature[32:])
    return b"\x30" + bytes([len(body)]) + body  # at most 70 bytes: short-form length


def der_to_raw(der: bytes) -> bytes:
    if len(der) < 2 or der[0] != 0x30 or der[1] != len(der) - 2 or der[1] > 0x7F:
        raise ValueError("not a DER SEQUENCE of the expected length")
    values, rest = [], der[2:]
    for _ in range(2):
        if len(rest) < 3 or rest[0] != 0x02 or not 1 <= rest[1] <= len(rest) - 2:
            raise ValueError("expected a DER INTEGER")
        value, rest = rest[2 : 2 + rest[1]], rest[2 + rest[1] :]
        if value[0] & 0x80 or (len(value) > 1 and value[0] == 0 and not value[1] & 0x80):
            raise ValueError("negative or non-minimal INTEGER")
        value = value.lstrip(b"\x00")
        if len(value) > 32:
            raise ValueError("INTEGER longer than 32 bytes")
        values.append(value.rjust(32, b"\x00"))
    if rest:
        raise ValueError("trailing bytes after the SEQUENCE")
    return values[0] + values[1]
