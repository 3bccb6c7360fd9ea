// npm `jose` as a relying party would use it: load a JWKS document, verify a JWT.
// Usage: node jwks_verify.mjs <jwks.json> <token> <alg>
// Prints {"ok": true, "payload": {...}} or {"ok": false, "error": "..."}.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify } from 'jose';

const [jwksPath, token, alg] = process.argv.slice(2);
try {
  const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksPath, 'utf8')));
  const { payload } = await jwtVerify(token, jwks, { algorithms: [alg] });
  console.log(JSON.stringify({ ok: true, payload }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: `${error.code || error.name}: ${error.message}` }));
}
