// Verify an SM2-signed JWS (alg "SM2") with github.com/tjfoc/gmsm 1.3.0
// (Debian: golang-github-tjfoc-gmsm-dev); fetches nothing.
// usage: go run verify.go TOKEN JWK_JSON
// Prints "valid" and the payload, exit 0; or "invalid: <reason>", exit 1.
//
// tjfoc/gmsm 1.3.0's Sm2Verify(pub, msg, uid, r, s) pads x but not y when it
// builds Z_A (keys whose y starts with a zero byte fail), and a nil uid means an
// *empty* ID there, not 1234567812345678. So this computes e = SM3(Z_A || M)
// itself and calls the digest-level sm2.Verify(pub, e, r, s).
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/tjfoc/gmsm/sm2"
	"github.com/tjfoc/gmsm/sm3"
)

var defaultID = []byte("1234567812345678")

type jwk struct {
	Kty, Crv, X, Y, Kid string
}

func b64url(text string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(text)
}

func pad32(v *big.Int) []byte { return v.FillBytes(make([]byte, 32)) }

// e = SM3(Z_A || M), Z_A = SM3(ENTL || ID || a || b || xG || yG || x || y).
func digest(pub *sm2.PublicKey, id, msg []byte) []byte {
	params := pub.Curve.Params()
	a := new(big.Int).Sub(params.P, big.NewInt(3))
	z := sm3.New()
	z.Write([]byte{byte(len(id) * 8 >> 8), byte(len(id) * 8)})
	z.Write(id)
	for _, v := range []*big.Int{a, params.B, params.Gx, params.Gy, pub.X, pub.Y} {
		z.Write(pad32(v))
	}
	e := sm3.New()
	e.Write(z.Sum(nil))
	e.Write(msg)
	return e.Sum(nil)
}

func verify(token string, key jwk) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	rawHeader, err := b64url(parts[0])
	if err != nil {
		return nil, errors.New("header is not base64url")
	}
	var header struct{ Alg, Kid *string }
	if err := json.Unmarshal(rawHeader, &header); err != nil {
		return nil, errors.New("header is not JSON")
	}
	if header.Alg == nil || *header.Alg != "SM2" { // never "none", never another alg
		return nil, errors.New("alg is not SM2")
	}
	if key.Kty != "EC" || key.Crv != "SM2" {
		return nil, errors.New("not an SM2 JWK")
	}
	if header.Kid != nil && *header.Kid != key.Kid {
		return nil, errors.New("kid does not match the JWK")
	}
	x, errX := b64url(key.X)
	y, errY := b64url(key.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("JWK x and y must be 32 bytes each")
	}
	curve := sm2.P256Sm2()
	pub := &sm2.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	if !curve.IsOnCurve(pub.X, pub.Y) {
		return nil, errors.New("JWK is not a point on the SM2 curve")
	}
	signature, err := b64url(parts[2])
	if err != nil || len(signature) != 64 {
		return nil, errors.New("signature must be exactly 64 bytes (r || s)")
	}
	r := new(big.Int).SetBytes(signature[:32])
	s := new(big.Int).SetBytes(signature[32:])
	n := curve.Params().N
	if r.Sign() <= 0 || r.Cmp(n) >= 0 || s.Sign() <= 0 || s.Cmp(n) >= 0 {
		return nil, errors.New("r or s out of range")
	}
	e := digest(pub, defaultID, []byte(parts[0]+"."+parts[1]))
	if !sm2.Verify(pub, e, r, s) {
		return nil, errors.New("bad signature")
	}
	return b64url(parts[1])
}

func main() {
	var key jwk
	err := json.Unmarshal([]byte(os.Args[2]), &key)
	var payload []byte
	if err == nil {
		payload, err = verify(os.Args[1], key)
	}
	if err != nil {
		fmt.Println("invalid:", err)
		os.Exit(1)
	}
	fmt.Println("valid")
	fmt.Println(string(payload))
}
