// SM2 peer for tests/core/gm/test_interop.py, on npm sm-crypto (see package.json).
// Reads one JSON request on stdin, writes one JSON reply on stdout.
//   {"op": "keypair"}                                   -> {"private": hex, "public": "04"+x+y}
//   {"op": "sign", "msg_hex", "private", "public", "user_id"}  -> {"signature": hex r||s}
//   {"op": "verify", "msg_hex", "signature", "public", "user_id"} -> {"valid": bool}
// Signatures are raw r||s (der: false) over SM3(Z_A || M) (hash: true).
import smCrypto from 'sm-crypto';

const { sm2 } = smCrypto;

const hexToBytes = (hex) => Array.from(Buffer.from(hex, 'hex'));

function handle(request) {
  const userId = request.user_id ?? '1234567812345678';
  switch (request.op) {
    case 'keypair': {
      const { privateKey, publicKey } = sm2.generateKeyPairHex();
      return { private: privateKey, public: publicKey };
    }
    case 'sign':
      return {
        signature: sm2.doSignature(hexToBytes(request.msg_hex), request.private, {
          hash: true,
          der: false,
          publicKey: request.public,
          userId,
        }),
      };
    case 'verify':
      return {
        valid: sm2.doVerifySignature(hexToBytes(request.msg_hex), request.signature, request.public, {
          hash: true,
          der: false,
          userId,
        }),
      };
    default:
      throw new Error(`unknown op ${request.op}`);
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(handle(JSON.parse(input))));
});
