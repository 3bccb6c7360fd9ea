// Verify an SM2-signed JWS (alg "SM2") with npm sm-crypto; fetches nothing.
// usage: node verify_sm_crypto.mjs TOKEN JWK_JSON
// Prints "valid" and the payload, exit 0; or "invalid: <reason>", exit 1.
import smCrypto from 'sm-crypto';

const { sm2 } = smCrypto;
// GB/T 32918.5 curve: prime p, coefficients a and b, order n.
const P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFFn;
const A = P - 3n;
const B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93n;
const N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123n;

const b64url = (text) => Buffer.from(text, 'base64url');
const big = (bytes) => BigInt(`0x${bytes.toString('hex') || '0'}`);

function verify(token, jwk) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(b64url(parts[0]).toString('utf8'));
  if (header.alg !== 'SM2') throw new Error(`alg ${header.alg} is not SM2`); // never "none"
  if (jwk.kty !== 'EC' || jwk.crv !== 'SM2') throw new Error('not an SM2 JWK');
  if ('kid' in header && header.kid !== jwk.kid) throw new Error('kid does not match the JWK');
  const x = b64url(jwk.x);
  const y = b64url(jwk.y);
  if (x.length !== 32 || y.length !== 32) throw new Error('JWK x and y must be 32 bytes each');
  const [xi, yi] = [big(x), big(y)];
  if (xi >= P || yi >= P || (yi * yi - xi ** 3n - A * xi - B) % P !== 0n) {
    throw new Error('JWK is not a point on the SM2 curve');
  }
  const signature = b64url(parts[2]);
  // sm-crypto takes s from *all* hex digits after the first 64 and does not
  // range-check r and s: check both yourself.
  if (signature.length !== 64) throw new Error('signature must be exactly 64 bytes (r || s)');
  const [r, s] = [big(signature.subarray(0, 32)), big(signature.subarray(32))];
  if (r < 1n || r >= N || s < 1n || s >= N) throw new Error('r or s out of range');
  const signingInput = `${parts[0]}.${parts[1]}`; // ASCII, so the UTF-8 sm-crypto uses is the same
  const publicHex = `04${x.toString('hex')}${y.toString('hex')}`; // with the 04 prefix
  const ok = sm2.doVerifySignature(signingInput, signature.toString('hex'), publicHex, {
    hash: true, // e = SM3(Z_A || M), not M itself
    der: false, // raw r || s
    userId: '1234567812345678',
  });
  if (!ok) throw new Error('bad signature');
  return b64url(parts[1]).toString('utf8');
}

try {
  const payload = verify(process.argv[2], JSON.parse(process.argv[3]));
  console.log('valid');
  console.log(payload);
} catch (error) {
  console.log(`invalid: ${error.message}`);
  process.exitCode = 1;
}
