// The browser side of the authorization code flow, for the node RP scripts:
// fetch with redirect: "manual", a tiny cookie jar, the provider's login form
// (and its consent page, if it shows one). No RP library code here.
//
//   import { loginThroughForm } from './browser_login.mjs';
//   const callbackUrl = await loginThroughForm(authorizationUrl, login, password, redirectUri);
// An optional fifth argument (an array) receives the paths of the pages filled in.
//
// Run directly, it reads {"authorization_url", "login", "password", "redirect_uri"}
// on stdin and prints {"callback": url}.
import { createHmac } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const FORM_ACTION = /<form method="post" action="(\/[^"?]*)"/;
const HIDDEN = /<input type="hidden" name="([^"]+)" value="([^"]*)"/g;

function unescapeHtml(text) {
  return text
    .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

class CookieJar {
  constructor() { this.cookies = new Map(); }

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

// RFC 6238 (SHA-1, 30 s, 6 digits), for the second-factor page (/mfa): the code an
// authenticator app would show for the base32 secret.
export function totp(secretBase32, now = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretBase32.replace(/[\s=]/g, '').toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

// options: {jar} to keep the browser's cookies (an SSO session) across flows,
// {totpSecret} to answer the second-factor page.
export async function loginThroughForm(authorizationUrl, login, password, redirectUriPrefix,
  pages = [], options = {}) {
  const jar = options.jar ?? new CookieJar();
  let url = String(authorizationUrl);
  let body;
  for (let hop = 0; hop < 20; hop += 1) {
    const headers = { cookie: jar.header() };
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(url, {
      method: body ? 'POST' : 'GET', body, headers, redirect: 'manual',
    });
    jar.store(response);
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location'), url).href;
      if (location.startsWith(redirectUriPrefix)) return location;
      url = location;
      body = undefined;
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) {
      throw new Error(`${url}: HTTP ${response.status}: ${html.slice(0, 300)}`);
    }
    const hidden = Object.fromEntries(
      [...html.matchAll(HIDDEN)].map((m) => [m[1], unescapeHtml(m[2])]),
    );
    // The page's form says which page it is (the sign-in page may be served by the
    // authorization endpoint itself).
    const path = FORM_ACTION.exec(html)?.[1] ?? new URL(url).pathname;
    pages.push(path);
    if (path === '/login' && hidden.csrf_token && 'ia' in hidden) {
      body = new URLSearchParams({ ...hidden, login, password });
    } else if (path === '/mfa' && hidden.csrf_token && options.totpSecret) {
      body = new URLSearchParams({ csrf_token: hidden.csrf_token,
        code: totp(options.totpSecret) });
    } else if (path === '/consent' && hidden.csrf_token && hidden.ia) {
      body = new URLSearchParams({ ...hidden, decision: 'allow' });
    } else {
      throw new Error(`unexpected page ${url}: ${html.slice(0, 300)}`);
    }
    url = new URL(path, url).href;
  }
  throw new Error(`too many redirects (pages: ${pages.join(', ')})`);
}

async function readStdin() {
  let input = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) input += chunk;
  return JSON.parse(input);
}

export { CookieJar, readStdin };

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const request = await readStdin();
  const pages = [];
  const callback = await loginThroughForm(request.authorization_url, request.login,
    request.password, request.redirect_uri, pages);
  process.stdout.write(JSON.stringify({ callback, pages }));
}
