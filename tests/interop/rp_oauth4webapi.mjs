// A relying party on npm oauth4webapi v3 (pinned in package.json), against our provider.
// Reads one JSON request on stdin, prints one JSON object on stdout.
//   {"scenario": "full" | "tamper" | "private_key_jwt" | "par" | "signed_userinfo" |
//    "request_object" | "dpop" | "resource", "issuer", "client_id", "client_secret", "alg",
//    "private_jwk" (private_key_jwt, request_object),
//    "userinfo_alg" (signed_userinfo), "resource", "other_resource" (resource),
//    "redirect_uri", "login", "password", "scope"?}
// The callback is checked by validateAuthResponse (state, and iss: RFC 9207, since
// discovery says authorization_response_iss_parameter_supported); the ID token by
// processAuthorizationCodeResponse (iss, aud, exp, iat, nonce, alg = the client's
// id_token_signed_response_alg) and validateApplicationLevelSignature (its signature,
// with the key of the discovery jwks_uri). at_hash is recomputed with node:crypto.
import { createHash } from 'node:crypto';

import * as oauth from 'oauth4webapi';

import { loginThroughForm, readStdin } from './browser_login.mjs';

const INSECURE = { [oauth.allowInsecureRequests]: true }; // http://127.0.0.1 only

function failure(error) {
  return {
    name: error?.name, code: error?.code, error: error?.error, status: error?.status,
    message: String(error?.message ?? error),
  };
}

async function outcome(thunk) {
  try {
    return { ok: true, value: await thunk() };
  } catch (error) {
    return { ok: false, ...failure(error) };
  }
}

function halfHash(value, alg) {
  const digest = createHash({ RS256: 'sha256', ES256: 'sha256', EdDSA: 'sha512' }[alg])
    .update(value).digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

function decodeHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());
}

async function setup(request) {
  const issuer = new URL(request.issuer);
  const as = await oauth.processDiscoveryResponse(issuer,
    await oauth.discoveryRequest(issuer, INSECURE));
  const client = { client_id: request.client_id,
    id_token_signed_response_alg: request.alg };
  const auth = request.client_secret
    ? oauth.ClientSecretBasic(request.client_secret) : oauth.None();
  return { as, client, auth };
}

async function authorize(ctx, request) {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const url = new URL(ctx.as.authorization_endpoint);
  for (const [k, v] of Object.entries({
    client_id: ctx.client.client_id,
    redirect_uri: request.redirect_uri,
    response_type: 'code',
    scope: request.scope ?? 'openid profile edu offline_access',
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...request.authorize_extra,
  })) url.searchParams.set(k, v);
  const pages = [];
  const callback = await loginThroughForm(url, request.login, request.password,
    request.redirect_uri, pages);
  return { verifier, state, nonce, callback, pages };
}

async function redeem(ctx, request, flow, params) {
  const response = await oauth.authorizationCodeGrantRequest(ctx.as, ctx.client, ctx.auth,
    params, request.redirect_uri, flow.verifier, INSECURE);
  const result = await oauth.processAuthorizationCodeResponse(ctx.as, ctx.client, response,
    { expectedNonce: flow.nonce, requireIdToken: true });
  await oauth.validateApplicationLevelSignature(ctx.as, response, INSECURE);
  return result;
}

// The browser signs in at url (a pushed or signed request); the code it brings back is
// checked and redeemed.
async function signInAt(ctx, request, url, { verifier, state, nonce }) {
  const pages = [];
  const callback = await loginThroughForm(url, request.login, request.password,
    request.redirect_uri, pages);
  const params = oauth.validateAuthResponse(ctx.as, ctx.client, new URL(callback), state);
  return { pages, result: await redeem(ctx, request, { verifier, nonce }, params) };
}

function idTokenReport(result, alg) {
  const claims = oauth.getValidatedIdTokenClaims(result);
  return { header: decodeHeader(result.id_token), claims,
    at_hash_ok: claims.at_hash === halfHash(result.access_token, alg) };
}

async function userinfo(ctx, accessToken, sub) {
  const response = await oauth.userInfoRequest(ctx.as, ctx.client, accessToken, INSECURE);
  return oauth.processUserInfoResponse(ctx.as, ctx.client, sub, response);
}

async function full(request) {
  const ctx = await setup(request);
  const flow = await authorize(ctx, request);
  const params = oauth.validateAuthResponse(ctx.as, ctx.client, new URL(flow.callback),
    flow.state);
  const result = await redeem(ctx, request, flow, params);
  const report = {
    discovery: {
      issuer: ctx.as.issuer,
      iss_parameter_supported: ctx.as.authorization_response_iss_parameter_supported,
    },
    pages: flow.pages,
    nonce: flow.nonce,
    token_type: result.token_type,
    scope: result.scope,
    id_token: idTokenReport(result, request.alg),
  };
  const sub = report.id_token.claims.sub;
  report.userinfo = await userinfo(ctx, result.access_token, sub);

  const refreshed = await oauth.processRefreshTokenResponse(ctx.as, ctx.client,
    await oauth.refreshTokenGrantRequest(ctx.as, ctx.client, ctx.auth, result.refresh_token,
      INSECURE));
  report.refresh = {
    id_token: refreshed.id_token ? idTokenReport(refreshed, request.alg) : null,
    new_refresh_token: Boolean(refreshed.refresh_token)
      && refreshed.refresh_token !== result.refresh_token,
    userinfo_sub: (await userinfo(ctx, refreshed.access_token, sub)).sub,
  };
  if (request.client_secret) {
    const cc = await oauth.processClientCredentialsResponse(ctx.as, ctx.client,
      await oauth.clientCredentialsGrantRequest(ctx.as, ctx.client, ctx.auth,
        { scope: 'api.read' }, INSECURE));
    const introspection = await oauth.processIntrospectionResponse(ctx.as, ctx.client,
      await oauth.introspectionRequest(ctx.as, ctx.client, ctx.auth, cc.access_token,
        INSECURE));
    report.client_credentials = { token_type: cc.token_type, scope: cc.scope,
      expires_in: cc.expires_in, introspection };
  }
  await oauth.processRevocationResponse(await oauth.revocationRequest(ctx.as, ctx.client,
    ctx.auth, refreshed.refresh_token, INSECURE));
  report.refresh_after_revocation = await outcome(async () => oauth.processRefreshTokenResponse(
    ctx.as, ctx.client, await oauth.refreshTokenGrantRequest(ctx.as, ctx.client, ctx.auth,
      refreshed.refresh_token, INSECURE)));
  return report;
}

async function tamper(request) {
  const ctx = await setup(request);
  const flow = await authorize(ctx, request);
  const variant = (change) => {
    const url = new URL(flow.callback);
    change(url.searchParams);
    return outcome(() => oauth.validateAuthResponse(ctx.as, ctx.client, url, flow.state));
  };
  const report = {
    iss_in_callback: new URL(flow.callback).searchParams.get('iss'),
    wrong_iss: await variant((p) => p.set('iss', 'https://evil.example.com')),
    trailing_slash_iss: await variant((p) => p.set('iss', `${request.issuer}/`)),
    missing_iss: await variant((p) => p.delete('iss')),
    wrong_state: await variant((p) => p.set('state', 'forged')),
  };
  // the untouched callback is accepted and its code redeemed: the variants failed
  // because of what was changed
  const params = oauth.validateAuthResponse(ctx.as, ctx.client, new URL(flow.callback),
    flow.state);
  report.genuine_sub = oauth.getValidatedIdTokenClaims(
    await redeem(ctx, request, flow, params)).sub;
  return report;
}

// private_key_jwt (RFC 7523) with oauth4webapi's own assertion: the client's private JWK
// ("private_jwk", with its kid) comes on stdin; client_credentials, then introspection of
// the token, both authenticated with a fresh assertion.
async function privateKey(privateJwk) {
  const { kid, alg, ...jwk } = privateJwk;
  const algorithm = { ES256: { name: 'ECDSA', namedCurve: 'P-256' },
    RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, EdDSA: { name: 'Ed25519' } }[alg];
  return { key: await crypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign']), kid };
}

async function privateKeyJwt(request) {
  const issuer = new URL(request.issuer);
  const as = await oauth.processDiscoveryResponse(issuer,
    await oauth.discoveryRequest(issuer, INSECURE));
  const { key, kid } = await privateKey(request.private_jwk);
  const client = { client_id: request.client_id };
  const auth = oauth.PrivateKeyJwt({ key, kid });
  const cc = await oauth.processClientCredentialsResponse(as, client,
    await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'api.read' },
      INSECURE));
  const introspection = await oauth.processIntrospectionResponse(as, client,
    await oauth.introspectionRequest(as, client, auth, cc.access_token, INSECURE));
  return { token_type: cc.token_type, scope: cc.scope, introspection };
}

// Pushed authorization requests (RFC 9126): oauth4webapi pushes the request (client
// authenticated), the browser brings only client_id and request_uri; then the code as in
// "full". A second visit with the same request_uri must not sign in again.
async function par(request) {
  const ctx = await setup(request);
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const pushed = await oauth.processPushedAuthorizationResponse(ctx.as, ctx.client,
    await oauth.pushedAuthorizationRequest(ctx.as, ctx.client, ctx.auth, {
      redirect_uri: request.redirect_uri, response_type: 'code',
      scope: request.scope ?? 'openid profile edu',
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256', state, nonce,
    }, INSECURE));
  const url = new URL(ctx.as.authorization_endpoint);
  url.searchParams.set('client_id', ctx.client.client_id);
  url.searchParams.set('request_uri', pushed.request_uri);
  const { pages, result } = await signInAt(ctx, request, url, { verifier, state, nonce });
  const again = await fetch(url, { redirect: 'manual' });
  return {
    endpoint: ctx.as.pushed_authorization_request_endpoint,
    request_uri: pushed.request_uri, expires_in: pushed.expires_in, pages,
    id_token: idTokenReport(result, request.alg), nonce,
    reused_status: again.status, reused_location: again.headers.get('location'),
  };
}

// Signed UserInfo (OIDC Core 5.3.2): the client is configured with
// userinfo_signed_response_alg, so oauth4webapi asks for application/jwt and
// processUserInfoResponse insists on a JWT of that alg, checks its iss and aud and the
// sub; validateApplicationLevelSignature checks its signature with the jwks_uri keys
// (not for SM2, which WebCrypto lacks: the test checks that with sm-crypto and openssl).
async function signedUserinfo(request) {
  const ctx = await setup(request);
  ctx.client.userinfo_signed_response_alg = request.userinfo_alg;
  const flow = await authorize(ctx, { ...request, scope: 'openid profile edu' });
  const params = oauth.validateAuthResponse(ctx.as, ctx.client, new URL(flow.callback),
    flow.state);
  const result = await redeem(ctx, request, flow, params);
  const sub = oauth.getValidatedIdTokenClaims(result).sub;
  const response = await oauth.userInfoRequest(ctx.as, ctx.client, result.access_token,
    INSECURE);
  const jwt = await response.clone().text();
  const claims = await oauth.processUserInfoResponse(ctx.as, ctx.client, sub, response);
  let signature_checked = false;
  if (request.userinfo_alg !== 'SM2') {
    await oauth.validateApplicationLevelSignature(ctx.as, response, INSECURE);
    signature_checked = true;
  }
  return { content_type: response.headers.get('content-type'), header: decodeHeader(jwt),
    jwt, claims, signature_checked,
    supported: ctx.as.userinfo_signing_alg_values_supported };
}

// Request objects (RFC 9101): oauth4webapi's issueRequestObject signs the authorization
// request with the client's private key (aud = the issuer, max_age as a number); the
// browser brings client_id and request, then the same object's twin is pushed (RFC 9126
// 3) and the browser brings the request_uri. Both sign in and are redeemed.
async function requestObject(request) {
  const ctx = await setup(request);
  const signer = await privateKey(request.private_jwk);
  const report = { pages: {}, id_tokens: {} };
  for (const how of ['by_value', 'pushed']) {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const signed = await oauth.issueRequestObject(ctx.as, ctx.client, {
      redirect_uri: request.redirect_uri, response_type: 'code',
      scope: 'openid profile edu', max_age: '600',
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256', state, nonce,
    }, signer);
    const url = new URL(ctx.as.authorization_endpoint);
    url.searchParams.set('client_id', ctx.client.client_id);
    if (how === 'by_value') {
      url.searchParams.set('request', signed);
    } else {
      const pushed = await oauth.processPushedAuthorizationResponse(ctx.as, ctx.client,
        await oauth.pushedAuthorizationRequest(ctx.as, ctx.client, ctx.auth,
          { request: signed }, INSECURE));
      url.searchParams.set('request_uri', pushed.request_uri);
    }
    const { pages, result } = await signInAt(ctx, request, url, { verifier, state, nonce });
    report.pages[how] = pages;
    report.id_tokens[how] = idTokenReport(result, request.alg);
    report.nonce = { ...report.nonce, [how]: nonce };
  }
  report.supported = ctx.as.request_object_signing_alg_values_supported;
  return report;
}

// DPoP (RFC 9449) with oauth4webapi's own proofs: a key pair of request.dpop_alg; the code
// redeemed, the token refreshed and UserInfo called with DPoP; then the refresh token and
// the access token without the key (as a thief would): both refused. When the provider
// requires nonces (use_dpop_nonce), each call is retried once with the nonce oauth4webapi
// kept from the answer, as its documentation says; nonce_retries counts them.
async function dpopFlow(request) {
  const ctx = await setup(request);
  const keyPair = await oauth.generateKeyPair(request.dpop_alg);
  const DPoP = oauth.DPoP(ctx.client, keyPair);
  let nonceRetries = 0;
  const retried = async (thunk) => {
    try {
      return await thunk();
    } catch (error) {
      if (!oauth.isDPoPNonceError(error)) throw error;
      nonceRetries += 1;
      return thunk();
    }
  };
  const flow = await authorize(ctx, { ...request, scope: 'openid profile edu' });
  const params = oauth.validateAuthResponse(ctx.as, ctx.client, new URL(flow.callback),
    flow.state);
  const result = await retried(async () => oauth.processAuthorizationCodeResponse(ctx.as,
    ctx.client, await oauth.authorizationCodeGrantRequest(ctx.as, ctx.client, ctx.auth,
      params, request.redirect_uri, flow.verifier, { DPoP, ...INSECURE }),
    { expectedNonce: flow.nonce, requireIdToken: true }));
  const sub = oauth.getValidatedIdTokenClaims(result).sub;
  const userinfo = await retried(async () => oauth.processUserInfoResponse(ctx.as,
    ctx.client, sub, await oauth.userInfoRequest(ctx.as, ctx.client, result.access_token,
      { DPoP, ...INSECURE })));
  const refreshed = await retried(async () => oauth.processRefreshTokenResponse(ctx.as,
    ctx.client, await oauth.refreshTokenGrantRequest(ctx.as, ctx.client, ctx.auth,
      result.refresh_token, { DPoP, ...INSECURE })));
  const stolenRefresh = await outcome(async () => oauth.processRefreshTokenResponse(
    ctx.as, ctx.client, await oauth.refreshTokenGrantRequest(ctx.as, ctx.client, ctx.auth,
      refreshed.refresh_token, INSECURE)));
  const stolenAccess = await fetch(ctx.as.userinfo_endpoint, {
    headers: { authorization: `Bearer ${refreshed.access_token}` } });
  return {
    token_type: result.token_type, refreshed_token_type: refreshed.token_type,
    access_token: result.access_token, userinfo,
    refreshed_userinfo_sub: (await oauth.processUserInfoResponse(ctx.as, ctx.client, sub,
      await oauth.userInfoRequest(ctx.as, ctx.client, refreshed.access_token,
        { DPoP, ...INSECURE }))).sub,
    stolen_refresh: stolenRefresh, stolen_access_status: stolenAccess.status,
    supported: ctx.as.dpop_signing_alg_values_supported, nonce_retries: nonceRetries,
  };
}

// Resource indicators (RFC 8707): the code flow and client_credentials name an API
// (request.resource); oauth4webapi's own resource-server check, validateJwtAccessToken
// (typ at+jwt, iss, aud, exp, the signature with the jwks_uri's key), takes each access
// token for that API and refuses it for another; UserInfo refuses the API's token.
async function resourceFlow(request) {
  const ctx = await setup(request);
  const { resource } = request;
  const flow = await authorize(ctx, { ...request, scope: 'openid profile',
    authorize_extra: { resource } });
  const params = oauth.validateAuthResponse(ctx.as, ctx.client, new URL(flow.callback),
    flow.state);
  const result = await oauth.processAuthorizationCodeResponse(ctx.as, ctx.client,
    await oauth.authorizationCodeGrantRequest(ctx.as, ctx.client, ctx.auth, params,
      request.redirect_uri, flow.verifier, { additionalParameters: { resource }, ...INSECURE }),
    { expectedNonce: flow.nonce, requireIdToken: true });
  const atApi = (token, audience) => outcome(() => oauth.validateJwtAccessToken(ctx.as,
    new Request(resource, { headers: { authorization: `Bearer ${token}` } }), audience,
    INSECURE));
  const cc = await oauth.processClientCredentialsResponse(ctx.as, ctx.client,
    await oauth.clientCredentialsGrantRequest(ctx.as, ctx.client, ctx.auth,
      { scope: 'api.read', resource }, INSECURE));
  const userinfo = await fetch(ctx.as.userinfo_endpoint, {
    headers: { authorization: `Bearer ${result.access_token}` } });
  return {
    code: { at_api: await atApi(result.access_token, resource),
      at_other: await atApi(result.access_token, request.other_resource),
      id_token_aud: oauth.getValidatedIdTokenClaims(result).aud },
    client_credentials: { at_api: await atApi(cc.access_token, resource),
      at_issuer: await atApi(cc.access_token, ctx.as.issuer) },
    userinfo_status: userinfo.status,
    userinfo_challenge: userinfo.headers.get('www-authenticate'),
  };
}

const SCENARIOS = { full, tamper, private_key_jwt: privateKeyJwt, par, dpop: dpopFlow,
  signed_userinfo: signedUserinfo, request_object: requestObject, resource: resourceFlow };

const request = await readStdin();
const run = SCENARIOS[request.scenario];
if (!run) throw new Error(`unknown scenario ${request.scenario}`);
process.stdout.write(JSON.stringify(await run(request)));
