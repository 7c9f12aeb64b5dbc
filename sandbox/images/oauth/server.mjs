// The bench's OAuth 2.1 authorization server for MCP resource servers: oidc-provider
// (https://github.com/panva/node-oidc-provider, OpenID Certified) configured the way a
// modern MCP authorization server is. Bench-only: accounts are whatever login is typed,
// state lives in memory, and a loopback admin listener rotates the signing keys.
//
// Option names and semantics cited below come from oidc-provider's configuration
// reference, docs/README.md "Configuration options" (generated from the commented
// lib/helpers/defaults.js; the npm package ships neither docs/ nor those comments, so they
// were read in the upstream repository, v9.11.4, and checked against the installed lib/ of
// the pinned version); the interaction handling follows the repository's
// example/routes/koa.js. "docs §x" below means the section `### x` of docs/README.md.
//
// Environment:
//   OAUTH_ISSUER              issuer identifier, e.g. https://auth.sandbox.test (required)
//   OAUTH_TLS_CERT/_KEY       PEM paths of the HTTPS certificate (chain) and key (required)
//   OAUTH_PORT, OAUTH_BIND    HTTPS listener (default 443 on 0.0.0.0)
//   OAUTH_RESOURCE_SUFFIX     host suffix(es) a `resource` must be under, comma-separated
//                             (default .sandbox.test)
//   OAUTH_KEYS_FILE           JSON file of the private signing keys (default ./keys.json;
//                             generated on first start)
//   OAUTH_ADMIN_PORT          loopback admin listener on 127.0.0.1 (default 8080; "off" disables)
//   OAUTH_TEST_CLIENT_ID/_SECRET  pre-registered confidential client (client_credentials)
//   OAUTH_ACCESS_TOKEN_TTL    access token lifetime in seconds (default 600)
//   OAUTH_ACCESS_TOKEN_ALG    JWS alg of access tokens: ES256 (default) or RS256

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';

import Provider, { errors } from 'oidc-provider';
// The library's in-memory adapter (docs §adapter links it as the "Default in-memory adapter
// implementation"), given a store of ours: see `adapter` below.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const SCOPES_MCP = ['mcp:tools', 'mcp:read'];
const ALGS = ['ES256', 'RS256']; // one key of each is kept; access tokens use ACCESS_TOKEN_ALG
const EMAIL_DOMAIN = 'example.test';
const LOGIN_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function fail(message) {
  console.error(`oauth: ${message}`);
  process.exit(2);
}

function env(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback === undefined) fail(`${name} is required`);
    return fallback;
  }
  return value;
}

function port(name, fallback) {
  const raw = env(name, fallback);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${name} must be a port number, not ${raw}`);
  return n;
}

const ISSUER = env('OAUTH_ISSUER');
const TLS_CERT = env('OAUTH_TLS_CERT');
const TLS_KEY = env('OAUTH_TLS_KEY');
const PORT = port('OAUTH_PORT', '443');
const BIND = env('OAUTH_BIND', '0.0.0.0');
const ADMIN_PORT = env('OAUTH_ADMIN_PORT', '8080') === 'off' ? null : port('OAUTH_ADMIN_PORT', '8080');
const KEYS_FILE = path.resolve(env('OAUTH_KEYS_FILE', 'keys.json'));
const RESOURCE_SUFFIXES = env('OAUTH_RESOURCE_SUFFIX', '.sandbox.test')
  .split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
const TEST_CLIENT_ID = process.env.OAUTH_TEST_CLIENT_ID || '';
const TEST_CLIENT_SECRET = process.env.OAUTH_TEST_CLIENT_SECRET || '';
const ACCESS_TOKEN_TTL = Number(env('OAUTH_ACCESS_TOKEN_TTL', '600'));
const ACCESS_TOKEN_ALG = env('OAUTH_ACCESS_TOKEN_ALG', 'ES256');

if (!URL.parse(ISSUER) || new URL(ISSUER).protocol !== 'https:') fail('OAUTH_ISSUER must be an https URL');
if (!Number.isInteger(ACCESS_TOKEN_TTL) || ACCESS_TOKEN_TTL < 1) fail('OAUTH_ACCESS_TOKEN_TTL must be a positive integer');
if (!ALGS.includes(ACCESS_TOKEN_ALG)) fail(`OAUTH_ACCESS_TOKEN_ALG must be one of ${ALGS.join(', ')}`);
if (!RESOURCE_SUFFIXES.length) fail('OAUTH_RESOURCE_SUFFIX must name at least one host suffix');
if (Boolean(TEST_CLIENT_ID) !== Boolean(TEST_CLIENT_SECRET)) {
  fail('set both OAUTH_TEST_CLIENT_ID and OAUTH_TEST_CLIENT_SECRET, or neither');
}

// ---------------------------------------------------------------------------------------
// Signing keys: a private JWKS in OAUTH_KEYS_FILE, newest first. oidc-provider signs with
// the first key matching the algorithm (docs §jwks: "move your new key to the very front of
// the keys array ... the key will be used for signing"), and publishes all of them at the
// jwks_uri, so a key that is no longer first still verifies the tokens it signed.
// ---------------------------------------------------------------------------------------

// RFC 7638 JWK thumbprint, the kid oidc-provider itself would compute.
function thumbprint(jwk) {
  const members = jwk.kty === 'EC'
    ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
    : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function newKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
}

function algOf(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'RSA') return 'RS256';
  return undefined;
}

function saveKeys(state) {
  fs.mkdirSync(path.dirname(KEYS_FILE), { recursive: true });
  const tmp = `${KEYS_FILE}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, KEYS_FILE);
}

function loadKeys() {
  let state = { keys: [], cookie_keys: [] };
  let dirty = false;
  if (fs.existsSync(KEYS_FILE)) {
    try {
      state = JSON.parse(fs.readFileSync(KEYS_FILE, 'utf8'));
    } catch (err) {
      fail(`${KEYS_FILE} is not valid JSON: ${err.message}`);
    }
    if (!Array.isArray(state.keys)) fail(`${KEYS_FILE} must hold {"keys": [private JWKs]}`);
  } else {
    dirty = true;
  }
  state.keys = state.keys.map((jwk) => {
    const alg = algOf(jwk);
    if (!ALGS.includes(alg) || !jwk.d) fail(`${KEYS_FILE}: only private ES256 (P-256) and RS256 keys are supported`);
    if (jwk.kid && jwk.alg && jwk.use) return jwk;
    dirty = true;
    return { ...jwk, kid: jwk.kid || thumbprint(jwk), alg, use: 'sig' };
  });
  for (const alg of ALGS) {
    if (!state.keys.some((jwk) => jwk.alg === alg)) {
      state.keys.push(newKey(alg));
      dirty = true;
    }
  }
  // cookies.keys: Keygrip keys signing the session/interaction cookies (lib/helpers/
  // defaults.js `cookies.keys`); kept here so they survive restarts and key rotations.
  if (!Array.isArray(state.cookie_keys) || !state.cookie_keys.length) {
    state.cookie_keys = [crypto.randomBytes(32).toString('base64url')];
    dirty = true;
  }
  if (dirty) saveKeys(state);
  return state;
}

function signingKid(state) {
  return state.keys.find((jwk) => jwk.alg === ACCESS_TOKEN_ALG).kid;
}

// ---------------------------------------------------------------------------------------
// Resource indicators (RFC 8707): any https URL whose host is under OAUTH_RESOURCE_SUFFIX.
// ---------------------------------------------------------------------------------------

function hostAllowed(hostname) {
  const host = hostname.toLowerCase();
  return RESOURCE_SUFFIXES.some((suffix) => (suffix.startsWith('.')
    ? host.endsWith(suffix) && host.length > suffix.length
    : host === suffix || host.endsWith(`.${suffix}`)));
}

function resourceAllowed(indicator) {
  const url = URL.parse(indicator);
  return Boolean(url && url.protocol === 'https:' && !url.username && !url.password && hostAllowed(url.hostname));
}

// ---------------------------------------------------------------------------------------
// Interactions (docs "User flows"; example/routes/koa.js): a login form that accepts any
// well-formed login (it becomes `sub`) and a consent that is granted without asking.
// ---------------------------------------------------------------------------------------

function htmlEscape(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, clientId, message = '') {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
<p>Bench authorization server: any login is accepted; it becomes the subject (<code>sub</code>)
and <code>&lt;login&gt;@${EMAIL_DOMAIN}</code> its email. Client: <code>${htmlEscape(clientId)}</code></p>
${message ? `<p role="alert">${htmlEscape(message)}</p>` : ''}
<form method="post" action="/interaction/${htmlEscape(uid)}/login">
  <label>Login <input name="login" autocomplete="username" autofocus required></label>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${htmlEscape(uid)}/abort">Cancel</a></p>
</body></html>
`;
}

async function readForm(req, limit = 8192) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new errors.InvalidRequest('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Consent for whatever the interaction says is missing: OIDC scopes, claims and resource
// scopes (the checks of the default `consent` prompt, docs §interactions.policy), exactly as
// the example's /confirm route grants them.
async function grantConsent(provider, details) {
  const { prompt: { details: missing }, params, session: { accountId } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  return details.grantId ? {} : { grantId };
}

function interactionRoutes(provider) {
  const route = /^\/interaction\/([^/]+)(\/login|\/abort)?$/;
  return async function interactions(ctx, next) {
    const match = route.exec(ctx.path);
    if (!match) return next();
    ctx.set('cache-control', 'no-store');
    const [, uid, action] = match;
    try {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== uid) throw new errors.SessionNotFound('interaction session id mismatch');
      const { prompt, params } = details;

      if (action === '/abort' && ctx.method === 'GET') {
        return await provider.interactionFinished(ctx.req, ctx.res, {
          error: 'access_denied', error_description: 'End-User aborted interaction',
        }, { mergeWithLastSubmission: false });
      }

      if (action === '/login' && ctx.method === 'POST') {
        if (prompt.name !== 'login') throw new errors.InvalidRequest('this interaction is not a login');
        const login = (await readForm(ctx.req)).get('login')?.trim() ?? '';
        if (!LOGIN_RE.test(login)) {
          ctx.status = 400;
          ctx.type = 'html';
          ctx.body = loginPage(uid, params.client_id, 'A login is 1-64 characters of A-Z a-z 0-9 . _ -');
          return undefined;
        }
        ctx.state.login = login;
        return await provider.interactionFinished(ctx.req, ctx.res, {
          login: { accountId: login, remember: false },
        }, { mergeWithLastSubmission: false });
      }

      if (!action && ctx.method === 'GET') {
        if (prompt.name === 'login') {
          ctx.type = 'html';
          ctx.body = loginPage(uid, params.client_id);
          return undefined;
        }
        if (prompt.name === 'consent') {
          const consent = await grantConsent(provider, details);
          return await provider.interactionFinished(ctx.req, ctx.res, { consent }, { mergeWithLastSubmission: true });
        }
        throw new errors.InvalidRequest(`unsupported prompt ${prompt.name}`);
      }
      ctx.status = 405;
      ctx.body = { error: 'invalid_request', error_description: 'method not allowed' };
      return undefined;
    } catch (err) {
      if (!(err instanceof errors.OIDCProviderError)) throw err;
      ctx.state.oauthError = err;
      ctx.status = err.statusCode || 400;
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>${htmlEscape(err.message)}</h1>`
        + `<p>${htmlEscape(err.error_description || '')}</p></body></html>\n`;
      return undefined;
    }
  };
}

// ---------------------------------------------------------------------------------------
// Logging: one line per request on stdout. Only the path (never the query string, which
// carries codes and may carry tokens), the status, the client id and the OAuth error code.
// ---------------------------------------------------------------------------------------

const ERROR_EVENTS = [
  'authorization.error', 'backchannel.error', 'challenge.error', 'jwks.error', 'discovery.error',
  'end_session.error', 'grant.error', 'introspection.error', 'pushed_authorization_request.error',
  'registration_create.error', 'registration_delete.error', 'registration_read.error',
  'registration_update.error', 'revocation.error', 'userinfo.error',
]; // docs/events.md

function requestLogger() {
  return async function log(ctx, next) {
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const fields = [new Date().toISOString(), ctx.ip, ctx.method, ctx.path, ctx.status, `${ms.toFixed(1)}ms`];
      if (ctx.oidc?.route) fields.push(`route=${ctx.oidc.route}`);
      let clientId;
      try { clientId = ctx.oidc?.client?.clientId; } catch { /* no client resolved */ }
      if (clientId) fields.push(`client=${JSON.stringify(clientId)}`);
      if (ctx.state.login) fields.push(`login=${JSON.stringify(ctx.state.login)}`);
      const err = ctx.state.oauthError;
      if (err) {
        fields.push(`error=${err.error || err.message || err.name}`);
        if (err.error_description) fields.push(`description=${JSON.stringify(err.error_description)}`);
        if (err.error_detail) fields.push(`detail=${JSON.stringify(err.error_detail)}`);
      }
      console.log(fields.join(' '));
    }
  };
}

// ---------------------------------------------------------------------------------------
// Storage. The provider is rebuilt (same configuration, new key set) when the keys rotate,
// and the library's default adapter would give each instance a fresh store of at most 1000
// entries (createMemoryAdapter in lib/adapters/memory_adapter.js). One process-wide store
// instead: registered clients, sessions, grants and refresh tokens survive a rotation and
// are never evicted by volume, only by their own expiry. Nothing survives a restart.
// ---------------------------------------------------------------------------------------

class ExpiringStore {
  #entries = new Map();

  constructor() {
    setInterval(() => {
      const now = Date.now();
      for (const [key, entry] of this.#entries) if (entry.expiry <= now) this.#entries.delete(key);
    }, 60_000).unref();
  }

  get(key) {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiry <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  has(key) {
    return this.get(key) !== undefined;
  }

  set(key, value, { maxAge } = {}) {
    const expiry = typeof maxAge === 'number' ? Date.now() + maxAge : Infinity;
    this.#entries.set(key, { value, expiry });
    return this;
  }

  delete(key) {
    return this.#entries.delete(key);
  }
}

const STORE = new ExpiringStore();
const CLOCK_TOLERANCE = 15; // docs §clockTolerance (the default, stated)

// ---------------------------------------------------------------------------------------
// The provider.
// ---------------------------------------------------------------------------------------

function configuration(keyState) {
  return {
    // docs §adapter; a factory per model name is accepted (lib/helpers/initialize_adapter.js).
    adapter: (model) => new MemoryAdapter(model, STORE, CLOCK_TOLERANCE),
    clockTolerance: CLOCK_TOLERANCE,

    // docs §jwks: private keys; the first one per alg signs.
    jwks: { keys: keyState.keys },

    // docs §cookies / defaults.js cookies.keys.
    cookies: { keys: keyState.cookie_keys },

    // docs §findAccount: the account is the login; `email` is released for the email scope.
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, email: `${sub}@${EMAIL_DOMAIN}`, email_verified: true };
        },
      };
    },

    // docs §claims: the email scope carries email and email_verified.
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },

    // docs §scopes: every scope a client may register (client_schema.js refuses a
    // registered `scope` outside this list) and what scopes_supported advertises. The MCP
    // scopes are issued only in tokens for a resource (getResourceServerInfo below).
    scopes: ['openid', 'offline_access', 'email', ...SCOPES_MCP],

    // docs §clients: the pre-registered confidential client for client_credentials.
    clients: TEST_CLIENT_ID ? [{
      client_id: TEST_CLIENT_ID,
      client_secret: TEST_CLIENT_SECRET,
      client_name: 'mcp-edge bench test client',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: SCOPES_MCP.join(' '),
      token_endpoint_auth_method: 'client_secret_basic',
    }] : [],

    // docs §responseTypes: OAuth 2.1 keeps the code flow only (no implicit/hybrid).
    responseTypes: ['code'],

    // docs §interactions.url (the default, stated): where login/consent happen.
    interactions: {
      url(ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },

    // docs §ttl (seconds), set explicitly rather than through the defaults' placeholder
    // functions. Resource-bound access tokens take accessTokenTTL from getResourceServerInfo.
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      ClientCredentials: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 60 * 60,
      Grant: 24 * 60 * 60,
      RefreshToken: 24 * 60 * 60,
    },

    // docs §pkce.required: PKCE (S256, the only method offered: code_challenge_methods_supported)
    // for every authorization code request, public or confidential (OAuth 2.1; MCP clients
    // MUST use it). The library default requires it of public clients only.
    pkce: { required: () => true },

    // docs §issueRefreshToken: a refresh token whenever the client registered the
    // refresh_token grant (MCP clients do), not only when offline_access was asked for.
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },

    // docs §extraClientMetadata.validator (runs for every client; ctx only during
    // registration): dynamically registered clients may not take client_credentials, which
    // is kept for the pre-registered client.
    extraClientMetadata: {
      properties: ['urn:mcp-edge:bench'],
      validator(ctx, key, value, metadata) {
        if (ctx && metadata.grant_types?.includes?.('client_credentials')) {
          throw new errors.InvalidClientMetadata('client_credentials is not available to dynamically registered clients');
        }
      },
    },

    features: {
      // docs §features.devInteractions: off, the routes above replace it.
      devInteractions: { enabled: false },
      // docs §features.registration: RFC 7591, open (initialAccessToken: false).
      registration: { enabled: true, initialAccessToken: false },
      // docs §features.clientCredentials.
      clientCredentials: { enabled: true },
      // docs §features.introspection / §features.revocation (RFC 7662 / RFC 7009). Note:
      // structured (JWT) access tokens are refused by both endpoints
      // (lib/shared/reject_structured_tokens.js); refresh tokens and opaque tokens are served.
      // allowedPolicy: the library default's rule, stated: a public client may only
      // introspect its own tokens; an authenticated confidential client any token.
      introspection: {
        enabled: true,
        async allowedPolicy(ctx, client, token) {
          return !(client.clientAuthMethod === 'none' && token.clientId !== ctx.oidc.client.clientId);
        },
      },
      // allowedPolicy: the library default's rule, stated: only the token's own client
      // revokes it (a public client asking for another's gets a silent no-op).
      revocation: {
        enabled: true,
        async allowedPolicy(ctx, client, token) {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
      // docs §features.resourceIndicators (RFC 8707).
      resourceIndicators: {
        enabled: true,
        // defaultResource: the library default (no `resource`, no resource-bound token: the
        // access token is then an opaque one for the userinfo endpoint only).
        // The granted resource is used when the token request omits `resource`.
        useGrantedResource: async () => true,
        async getResourceServerInfo(ctx, resourceIndicator) {
          if (!resourceAllowed(resourceIndicator)) {
            throw new errors.InvalidTarget(`resource must be an https URL under ${RESOURCE_SUFFIXES.join(', ')}`);
          }
          // "Resource Server Definition" (docs §getResourceServerInfo): aud defaults to the
          // resource indicator itself.
          return {
            scope: SCOPES_MCP.join(' '),
            accessTokenFormat: 'jwt',
            accessTokenTTL: ACCESS_TOKEN_TTL,
            jwt: { sign: { alg: ACCESS_TOKEN_ALG } },
          };
        },
      },
    },
  };
}

let keyState = loadKeys();
let handler;

function build() {
  const next = new Provider(ISSUER, configuration(keyState));
  for (const name of ERROR_EVENTS) {
    next.on(name, (ctx, err) => { if (ctx?.state) ctx.state.oauthError = err; });
  }
  next.on('server_error', (ctx, err) => {
    if (ctx?.state) ctx.state.oauthError = err;
    console.error(`oauth: server_error on ${ctx?.method} ${ctx?.path}: ${err?.stack || err}`);
  });
  next.use(requestLogger());
  next.use(interactionRoutes(next));
  handler = next.callback();
}

build();

const server = https.createServer({
  cert: fs.readFileSync(TLS_CERT),
  key: fs.readFileSync(TLS_KEY),
}, (req, res) => handler(req, res));

// ---------------------------------------------------------------------------------------
// Admin listener (bench only, 127.0.0.1): key rotation without a restart.
//   POST /rotate            a new ES256 and RS256 key go first (they sign from now on); the
//                           previous keys stay published, so tokens they signed still verify.
//   POST /rotate?drop-old=1 only the newest key of each alg stays published (no new key).
//   GET  /keys              the published kids and the access-token signing kid.
// ---------------------------------------------------------------------------------------

function keySummary(extra = {}) {
  return {
    signing_kid: signingKid(keyState),
    access_token_alg: ACCESS_TOKEN_ALG,
    kids: keyState.keys.map((jwk) => jwk.kid),
    keys: keyState.keys.map((jwk) => ({ kid: jwk.kid, alg: jwk.alg, kty: jwk.kty })),
    ...extra,
  };
}

function rotate(dropOld) {
  const previous = keyState;
  let next;
  let dropped = [];
  if (dropOld) {
    const keep = new Set(ALGS.map((alg) => previous.keys.find((jwk) => jwk.alg === alg).kid));
    dropped = previous.keys.filter((jwk) => !keep.has(jwk.kid)).map((jwk) => jwk.kid);
    next = { ...previous, keys: previous.keys.filter((jwk) => keep.has(jwk.kid)) };
  } else {
    next = { ...previous, keys: [...ALGS.map(newKey), ...previous.keys] };
  }
  keyState = next;
  try {
    build();
  } catch (err) {
    keyState = previous;
    build();
    throw err;
  }
  saveKeys(keyState);
  return keySummary({ dropped });
}

function sendJson(res, status, body) {
  const data = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

const admin = ADMIN_PORT === null ? null : http.createServer((req, res) => {
  const url = new URL(req.url, 'http://admin');
  res.on('finish', () => console.log([new Date().toISOString(), 'admin', req.method, url.pathname,
    res.statusCode].join(' ')));
  try {
    if (url.pathname === '/rotate') {
      if (req.method !== 'POST') return sendJson(res, 405, { error: 'POST only' });
      const dropOld = ['1', 'true', 'yes'].includes(url.searchParams.get('drop-old') ?? '');
      return sendJson(res, 200, rotate(dropOld));
    }
    if (url.pathname === '/keys' && req.method === 'GET') return sendJson(res, 200, keySummary());
    if (url.pathname === '/healthz' && req.method === 'GET') return sendJson(res, 200, { ok: true });
    return sendJson(res, 404, { error: 'not found' });
  } catch (err) {
    console.error(`oauth: admin ${url.pathname} failed: ${err.stack || err}`);
    return sendJson(res, 500, { error: String(err.message || err) });
  }
});

server.on('error', (err) => fail(`HTTPS listener on ${BIND}:${PORT}: ${err.message}`));
server.listen(PORT, BIND, () => {
  const { port: bound } = server.address();
  console.log(`oauth: issuer ${ISSUER} listening on https://${BIND}:${bound}`
    + ` (resources under ${RESOURCE_SUFFIXES.join(', ')}; access tokens ${ACCESS_TOKEN_ALG}`
    + ` kid ${signingKid(keyState)}, ttl ${ACCESS_TOKEN_TTL}s; keys in ${KEYS_FILE})`);
});
if (admin) {
  admin.on('error', (err) => fail(`admin listener on 127.0.0.1:${ADMIN_PORT}: ${err.message}`));
  admin.listen(ADMIN_PORT, '127.0.0.1', () => {
    console.log(`oauth: admin listening on http://127.0.0.1:${admin.address().port}`);
  });
}

function shutdown(signal) {
  console.log(`oauth: ${signal}, stopping`);
  server.close();
  admin?.close();
  setTimeout(() => process.exit(0), 1000).unref();
  server.closeAllConnections?.();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
