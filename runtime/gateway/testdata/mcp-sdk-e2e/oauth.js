// The official MCP TypeScript SDK client against the gateway as an OAuth
// resource server, with Ory Hydra as the authorization server (run by
// TestHydraTypeScriptSDK in runtime/gateway/hydra_e2e_test.go).
//
// The SDK does the OAuth itself: it meets the gateway's 401, reads the
// protected-resource metadata, finds Hydra's endpoints by discovery, and
// runs the authorization code flow with PKCE for a person (this script is
// the person's browser) or the client credentials grant for a machine.
// Hydra takes the audience of a token from its own "audience" parameter,
// not RFC 8707's "resource": the script adds it, the one thing set up for
// this provider.
//
// SCENARIOS (JSON) lists what to do: {name, kind: user|machine|bearer,
// email, token, calls: [{tool, args}]}. Each connection and call prints one
// RESULT line.
'use strict';

const crypto = require('node:crypto');
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { UnauthorizedError } = require('@modelcontextprotocol/sdk/client/auth.js');
const { ClientCredentialsProvider } = require('@modelcontextprotocol/sdk/client/auth-extensions.js');
const { result, errName } = require('../sdk-e2e/results.js');

const env = process.env;
const RESOURCE = env.GATEWAY_URL + '/mcp';
const REDIRECT_URI = env.REDIRECT_URI;

// browse is the user's browser: it follows the sign-in's redirects with
// Hydra's cookies until the redirect to the app, and returns its query.
async function browse(authURL) {
  const jar = new Map();
  let url = new URL(authURL);
  for (let hop = 0; hop < 20; hop++) {
    if (url.href.startsWith(REDIRECT_URI)) return url.searchParams;
    const headers = jar.size ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {};
    const res = await fetch(url, { redirect: 'manual', headers });
    for (const c of res.headers.getSetCookie()) {
      const kv = c.split(';')[0];
      const i = kv.indexOf('=');
      if (i > 0) jar.set(kv.slice(0, i).trim(), kv.slice(i + 1).trim());
    }
    const loc = res.headers.get('location');
    await res.arrayBuffer();
    if (res.status < 300 || res.status >= 400 || !loc) {
      throw new Error(`the sign-in stopped at ${url.origin}${url.pathname} with HTTP ${res.status}`);
    }
    url = new URL(loc, url);
  }
  throw new Error('the sign-in redirected more than 20 times');
}

// UserProvider is a native app's OAuth client: pre-registered at Hydra as
// a public client, its tokens kept in memory.
class UserProvider {
  constructor(email) {
    this.email = email;
    this.code = undefined;
    this.authURL = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
  }
  get redirectUrl() { return REDIRECT_URI; }
  get clientMetadata() {
    return {
      client_name: 'armoriq e2e native app', redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() { return { client_id: env.NATIVE_CLIENT_ID }; }
  // The app's CSRF state: the SDK sends none unless asked, and Hydra
  // refuses an authorization request without one.
  state() {
    this._state = crypto.randomBytes(24).toString('base64url');
    return this._state;
  }
  tokens() { return this._tokens; }
  saveTokens(t) { this._tokens = t; }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
  async redirectToAuthorization(url) {
    this.authURL = url.href;
    url.searchParams.set('login_hint', this.email); // the user types their email
    url.searchParams.set('audience', url.searchParams.get('resource'));
    const q = await browse(url.href);
    if (q.get('error')) throw new Error(`authorization refused: ${q.get('error')}: ${q.get('error_description')}`);
    if (q.get('state') !== this._state) throw new Error('the redirect carries another state than the one sent');
    this.code = q.get('code');
  }
}

// HydraClientCredentials is the SDK's client credentials provider asking
// Hydra for the gateway's audience.
class HydraClientCredentials extends ClientCredentialsProvider {
  prepareTokenRequest(scope) {
    const params = super.prepareTokenRequest(scope);
    params.set('audience', RESOURCE);
    return params;
  }
}

const newClient = () => new Client({ name: 'oauth-e2e-ts', version: '1' });

// connectUser signs the person in as the SDK asks an app to: connect, get
// UnauthorizedError after the redirect, finish with the code, reconnect.
async function connectUser(email) {
  const provider = new UserProvider(email);
  let transport = new StreamableHTTPClientTransport(new URL(RESOURCE), { authProvider: provider });
  let client = newClient();
  try {
    await client.connect(transport);
    throw new Error('connected without signing in');
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.code) throw e;
  }
  await transport.finishAuth(provider.code);
  transport = new StreamableHTTPClientTransport(new URL(RESOURCE), { authProvider: provider });
  client = newClient();
  await client.connect(transport);
  return { client, provider };
}

function jwtHeader(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
}

async function connect(s) {
  switch (s.kind) {
    case 'user': {
      const { client, provider } = await connectUser(s.email);
      const auth = new URL(provider.authURL);
      return {
        client,
        info: {
          kid: jwtHeader(provider.tokens().access_token).kid,
          authorizationEndpoint: auth.origin + auth.pathname,
          resource: auth.searchParams.get('resource'),
          scope: auth.searchParams.get('scope'),
          codeChallengeMethod: auth.searchParams.get('code_challenge_method'),
        },
      };
    }
    case 'machine': {
      // The SDK asks a client credentials grant for the scope configured
      // here (not the one the protected-resource metadata lists).
      const provider = new HydraClientCredentials({
        clientId: env.MACHINE_CLIENT_ID, clientSecret: env.MACHINE_CLIENT_SECRET, expectedIssuer: env.ISSUER, scope: 'mcp',
      });
      const client = newClient();
      await client.connect(new StreamableHTTPClientTransport(new URL(RESOURCE), { authProvider: provider }));
      return { client, info: { kid: jwtHeader(provider.tokens().access_token).kid } };
    }
    case 'bearer': {
      const client = newClient();
      await client.connect(new StreamableHTTPClientTransport(new URL(RESOURCE), {
        requestInit: { headers: { Authorization: 'Bearer ' + s.token } },
      }));
      return { client, info: {} };
    }
    default:
      throw new Error('unknown kind ' + s.kind);
  }
}

async function run(s) {
  let conn;
  try {
    conn = await connect(s);
    result(s.name, { ok: true, ...conn.info });
  } catch (e) {
    result(s.name, { ok: false, error: errName(e), message: String(e.message || e), code: e.code });
    return;
  }
  for (const c of s.calls || []) {
    const scenario = `${s.name}/${c.tool}`;
    try {
      const r = await conn.client.callTool({ name: c.tool, arguments: c.args });
      const text = (r.content || []).map((x) => x.text || '').join('');
      result(scenario, { ok: !r.isError, text, isError: !!r.isError });
    } catch (e) {
      result(scenario, { ok: false, error: errName(e), message: String(e.message || e), code: e.code });
    }
  }
  await conn.client.close();
}

(async () => {
  for (const s of JSON.parse(env.SCENARIOS)) await run(s);
  console.log('DONE');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
