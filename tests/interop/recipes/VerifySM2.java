// Verify an SM2-signed JWS (alg "SM2") with Bouncy Castle; fetches nothing.
// usage: javac -cp bcprov.jar VerifySM2.java
//        java -cp bcprov.jar:. VerifySM2 [--der] TOKEN JWK_JSON
// Prints "valid" and the payload, exit 0; or "invalid: <reason>", exit 1.
// --der shows the other route: convert r || s to DER for SM2Signer's default encoding.

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Base64;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bouncycastle.asn1.gm.GMNamedCurves;
import org.bouncycastle.asn1.x9.X9ECParameters;
import org.bouncycastle.crypto.params.ECDomainParameters;
import org.bouncycastle.crypto.params.ECPublicKeyParameters;
import org.bouncycastle.crypto.params.ParametersWithID;
import org.bouncycastle.crypto.signers.PlainDSAEncoding;
import org.bouncycastle.crypto.signers.SM2Signer;
import org.bouncycastle.crypto.signers.StandardDSAEncoding;
import org.bouncycastle.math.ec.ECPoint;

public final class VerifySM2 {
    static final byte[] DEFAULT_ID = "1234567812345678".getBytes(StandardCharsets.US_ASCII);
    static final X9ECParameters CURVE = GMNamedCurves.getByName("sm2p256v1");
    static final ECDomainParameters DOMAIN =
            new ECDomainParameters(CURVE.getCurve(), CURVE.getG(), CURVE.getN(), CURVE.getH());

    // A JSON string member; use your JSON library (Jackson, Gson, ...) in real code.
    static String member(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\"\\s*:\\s*\"([^\"]*)\"").matcher(json);
        return m.find() ? m.group(1) : null;
    }

    static byte[] b64url(String text) {
        return Base64.getUrlDecoder().decode(text); // padding optional, bad characters throw
    }

    static String verify(String token, String jwk, boolean der) {
        String[] parts = token.split("\\.", -1);
        if (parts.length != 3) throw new IllegalArgumentException("not a compact JWS");
        String header = new String(b64url(parts[0]), StandardCharsets.UTF_8);
        if (!"SM2".equals(member(header, "alg"))) { // never "none", never another alg
            throw new IllegalArgumentException("alg is not SM2");
        }
        if (!"EC".equals(member(jwk, "kty")) || !"SM2".equals(member(jwk, "crv"))) {
            throw new IllegalArgumentException("not an SM2 JWK");
        }
        String kid = member(header, "kid");
        if (kid != null && !kid.equals(member(jwk, "kid"))) {
            throw new IllegalArgumentException("kid does not match the JWK");
        }
        byte[] x = b64url(member(jwk, "x"));
        byte[] y = b64url(member(jwk, "y"));
        if (x.length != 32 || y.length != 32) {
            throw new IllegalArgumentException("JWK x and y must be 32 bytes each");
        }
        // validatePoint throws unless (x, y) is on the curve.
        ECPoint q = CURVE.getCurve().validatePoint(new BigInteger(1, x), new BigInteger(1, y));
        ECPublicKeyParameters publicKey = new ECPublicKeyParameters(q, DOMAIN);

        byte[] signature = b64url(parts[2]);
        if (signature.length != 64) {
            throw new IllegalArgumentException("signature must be exactly 64 bytes (r || s)");
        }
        BigInteger r = new BigInteger(1, Arrays.copyOfRange(signature, 0, 32));
        BigInteger s = new BigInteger(1, Arrays.copyOfRange(signature, 32, 64));
        BigInteger n = CURVE.getN();
        if (r.signum() <= 0 || r.compareTo(n) >= 0 || s.signum() <= 0 || s.compareTo(n) >= 0) {
            throw new IllegalArgumentException("r or s out of range");
        }

        // PlainDSAEncoding takes raw r || s; the default encoding wants DER.
        SM2Signer signer = der ? new SM2Signer() : new SM2Signer(PlainDSAEncoding.INSTANCE);
        byte[] encoded = der ? encodeDer(n, r, s) : signature;
        signer.init(false, new ParametersWithID(publicKey, DEFAULT_ID)); // SM3, Z_A with the ID
        byte[] signingInput = (parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII);
        signer.update(signingInput, 0, signingInput.length);
        if (!signer.verifySignature(encoded)) throw new IllegalArgumentException("bad signature");
        return new String(b64url(parts[1]), StandardCharsets.UTF_8);
    }

    // Raw r || s -> DER SEQUENCE { INTEGER r, INTEGER s }.
    static byte[] encodeDer(BigInteger n, BigInteger r, BigInteger s) {
        try {
            return StandardDSAEncoding.INSTANCE.encode(n, r, s);
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static void main(String[] args) {
        boolean der = args.length == 3 && args[0].equals("--der");
        int first = der ? 1 : 0;
        // The payload is UTF-8 JSON: print UTF-8 whatever the platform encoding.
        PrintStream out = new PrintStream(
                new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        try {
            String payload = verify(args[first], args[first + 1], der);
            out.println("valid");
            out.println(payload);
        } catch (RuntimeException e) { // IllegalArgumentException, a missing member, ...
            out.println("invalid: " + e.getMessage());
            System.exit(1);
        }
    }
}
