// A relying party on npm openid-client v6 (pinned in package.json), against our provider.
// Reads one JSON request on stdin, prints one JSON object on stdout.
//   {"scenario": "full" | "public" | "reuse" | "step_up" | "logout" | "par" | "jar",
//    "issuer", "client_id", "client_secret", "private_jwk" and "userinfo_alg" (jar),
//    "alg", "redirect_uri", "login", "password", "scope"?, "cc_scope"?,
//    "post_logout_redirect_uri"?}
// The authorization code + PKCE flow goes through the provider's real login form
// (browser_login.mjs). openid-client checks the ID token (iss, aud, exp, iat, nonce,
// alg = the client's id_token_signed_response_alg) and, with enableNonRepudiationChecks,
// its signature against the discovery jwks_uri. at_hash (optional in the code flow,
// not checked by openid-client) is recomputed here with node:crypto.
import { createHash } from 'node:crypto';

import * as client from 'openid-client';

import { CookieJar, loginThroughForm, readStdin } from './browser_login.mjs';

function failure(error) {
  return {
    name: error?.name, code: error?.code, error: error?.error, status: error?.status,
    message: String(error?.message ?? error),
  };
}

async function outcome(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, ...failure(error) };
  }
}

function decodeHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());
}

function halfHash(value, alg) {
  const digest = createHash({ RS256: 'sha256', ES256: 'sha256', EdDSA: 'sha512' }[alg])
    .update(value).digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

async function configure(request) {
  const auth = request.client_secret
    ? client.ClientSecretBasic(request.client_secret) : client.None();
  const config = await client.discovery(new URL(request.issuer), request.client_id, {
    id_token_signed_response_alg: request.alg,
    ...(request.userinfo_alg ? { userinfo_signed_response_alg: request.userinfo_alg } : {}),
  }, auth, { execute: [client.allowInsecureRequests] });
  client.enableNonRepudiationChecks(config); // verify ID token signatures with the jwks_uri
  return config;
}

async function codeFlow(config, request, extra = {}, browser = {}, build = client.buildAuthorizationUrl) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = await build(config, {
    redirect_uri: request.redirect_uri,
    scope: request.scope ?? 'openid profile edu offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  const pages = [];
  const callback = await loginThroughForm(url, request.login, request.password,
    request.redirect_uri, pages, browser);
  const checks = { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
    idTokenExpected: true };
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), checks);
  return { callback, pages, checks, nonce, tokens, url: String(url) };
}

function idTokenReport(tokens, alg) {
  const claims = tokens.claims();
  return {
    header: decodeHeader(tokens.id_token),
    claims,
    at_hash_ok: claims.at_hash === halfHash(tokens.access_token, alg),
  };
}

async function full(request) {
  const config = await configure(request);
  const server = config.serverMetadata();
  const { callback, pages, nonce, tokens } = await codeFlow(config, request);
  const report = {
    discovery: { issuer: server.issuer, jwks_uri: server.jwks_uri },
    callback_params: Object.fromEntries(new URL(callback).searchParams),
    pages,
    nonce,
    token_type: tokens.token_type,
    scope: tokens.scope,
    id_token: idTokenReport(tokens, request.alg),
  };
  const sub = report.id_token.claims.sub;
  report.userinfo = await client.fetchUserInfo(config, tokens.access_token, sub);

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  report.refresh = {
    id_token: refreshed.id_token ? idTokenReport(refreshed, request.alg) : null,
    new_access_token: refreshed.access_token !== tokens.access_token,
    new_refresh_token: Boolean(refreshed.refresh_token)
      && refreshed.refresh_token !== tokens.refresh_token,
    userinfo_sub: (await client.fetchUserInfo(config, refreshed.access_token, sub)).sub,
  };

  if (request.client_secret) {
    const cc = await client.clientCredentialsGrant(config,
      { scope: request.cc_scope ?? 'api.read' });
    report.client_credentials = {
      token_type: cc.token_type, scope: cc.scope, expires_in: cc.expiresIn(),
      has_id_token: Boolean(cc.id_token), has_refresh_token: Boolean(cc.refresh_token),
      introspection: await client.tokenIntrospection(config, cc.access_token),
      userinfo: await outcome(client.fetchUserInfo(config, cc.access_token,
        client.skipSubjectCheck)),
    };
    report.introspection = {
      access_token: await client.tokenIntrospection(config, refreshed.access_token),
      refresh_token: await client.tokenIntrospection(config, refreshed.refresh_token,
        { token_type_hint: 'refresh_token' }),
      retired_refresh_token: await client.tokenIntrospection(config, tokens.refresh_token,
        { token_type_hint: 'refresh_token' }),
    };
  }

  await client.tokenRevocation(config, refreshed.access_token,
    { token_type_hint: 'access_token' });
  report.after_access_revocation = {
    userinfo: await outcome(client.fetchUserInfo(config, refreshed.access_token, sub)),
    introspection: request.client_secret
      ? await client.tokenIntrospection(config, refreshed.access_token) : null,
  };
  await client.tokenRevocation(config, refreshed.refresh_token);
  report.after_refresh_revocation = {
    refresh: await outcome(client.refreshTokenGrant(config, refreshed.refresh_token)),
  };
  return report;
}

async function reuse(request) {
  const config = await configure(request);
  const { callback, checks, tokens } = await codeFlow(config, request);
  const second = await outcome(client.authorizationCodeGrant(config, new URL(callback), checks));
  const sub = tokens.claims().sub;
  return {
    first_sub: sub,
    second,
    // RFC 6749 4.1.2: tokens issued from a reused code SHOULD be revoked
    userinfo_after_reuse: await outcome(client.fetchUserInfo(config, tokens.access_token, sub)),
    refresh_after_reuse: await outcome(client.refreshTokenGrant(config, tokens.refresh_token)),
  };
}

// Step-up: a password session (acr sfa), then the app asks for acr_values=urn:edu:acr:mfa
// in the same browser; the provider asks for the authenticator code and the new ID token,
// verified by openid-client, carries the higher acr.
async function stepUp(request) {
  const config = await configure(request);
  const browser = { jar: new CookieJar(), totpSecret: request.totp_secret };
  const first = await codeFlow(config, request, {}, browser);
  const second = await codeFlow(config, request, { acr_values: 'urn:edu:acr:mfa' }, browser);
  return {
    first: { pages: first.pages, claims: first.tokens.claims() },
    second: { pages: second.pages, claims: second.tokens.claims() },
  };
}

// RP-Initiated Logout: openid-client builds the end-session URL from discovery
// (end_session_endpoint) with the ID token as hint; the browser follows it back to the
// post-logout address, and a prompt=none request afterwards finds nobody signed in.
async function logout(request) {
  const config = await configure(request);
  const browser = { jar: new CookieJar() };
  const { tokens } = await codeFlow(config, request, {}, browser);
  const state = client.randomState();
  const url = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: request.post_logout_redirect_uri,
    state,
  });
  const answer = await fetch(url, { redirect: 'manual',
    headers: { cookie: browser.jar.header() } });
  browser.jar.store(answer);
  const silent = client.buildAuthorizationUrl(config, {
    redirect_uri: request.redirect_uri, scope: 'openid', prompt: 'none',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const after = await fetch(silent, { redirect: 'manual',
    headers: { cookie: browser.jar.header() } });
  return {
    end_session_endpoint: config.serverMetadata().end_session_endpoint,
    end_session_url: url.href,
    status: answer.status,
    location: answer.headers.get('location'),
    state,
    prompt_none: Object.fromEntries(new URL(after.headers.get('location')).searchParams),
  };
}

// Pushed authorization requests (RFC 9126): buildAuthorizationUrlWithPAR pushes the
// request (client authenticated) and builds the URL with client_id and request_uri only.
async function par(request) {
  const config = await configure(request);
  const flow = await codeFlow(config, request, {}, {}, client.buildAuthorizationUrlWithPAR);
  return { pages: flow.pages, nonce: flow.nonce, id_token: idTokenReport(flow.tokens, request.alg),
    authorization_url_params: [...new URL(flow.url).searchParams.keys()].sort() };
}

// Request objects (RFC 9101) and signed UserInfo (OIDC Core 5.3.2):
// buildAuthorizationUrlWithJAR signs the request with the client's private key (the URL
// holds client_id and request only); fetchUserInfo, told the client's
// userinfo_signed_response_alg, takes only a JWT answer and (non-repudiation checks on)
// verifies its signature with the jwks_uri keys.
async function jar(request) {
  const config = await configure(request);
  const { kid, alg, ...jwk } = request.private_jwk;
  const algorithm = { ES256: { name: 'ECDSA', namedCurve: 'P-256' },
    EdDSA: { name: 'Ed25519' } }[alg];
  const key = await crypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign']);
  const build = (cfg, params) => client.buildAuthorizationUrlWithJAR(cfg, params, { key, kid });
  const flow = await codeFlow(config, request, {}, {}, build);
  const sub = flow.tokens.claims().sub;
  const userinfo = await client.fetchUserInfo(config, flow.tokens.access_token, sub);
  return { pages: flow.pages, nonce: flow.nonce, id_token: idTokenReport(flow.tokens, request.alg),
    authorization_url_params: [...new URL(flow.url).searchParams.keys()].sort(), userinfo };
}

const SCENARIOS = { full, public: full, reuse, step_up: stepUp, logout, par, jar };

const request = await readStdin();
const run = SCENARIOS[request.scenario];
if (!run) throw new Error(`unknown scenario ${request.scenario}`);
process.stdout.write(JSON.stringify(await run(request)));
