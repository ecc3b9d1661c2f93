// server.mjs — a real OAuth 2.0 authorization server for secintake's tests.
//
// Why: the daemon logs into IMAP/SMTP with OAuth2 (SASL XOAUTH2 and
// OAUTHBEARER).  To test that for real, the mail stack's Dovecot checks
// every token by RFC 7662 introspection against this server, and the
// daemon refreshes its tokens at this server's token endpoint.  The server
// is panva's oidc-provider (a certified OpenID/OAuth2 implementation from
// npm), configured here; nothing of the protocol is hand-written.
//
// Usage (arguments or the environment variables in brackets):
//   node server.mjs [--port P (OAUTH2_PORT, default 0 = any free port)]
//                   [--issuer-host H (OAUTH2_ISSUER_HOST, 127.0.0.1)]
//                   [--access-ttl SECONDS (OAUTH2_ACCESS_TTL, 3600)]
//                   [--state-file PATH (OAUTH2_STATE_FILE)]
//                   [--client-id ID (OAUTH2_CLIENT_ID, secintake)]
//                   [--client-secret S (OAUTH2_CLIENT_SECRET, secintake-secret)]
//                   [--introspection-client-id ID (dovecot)]
//                   [--introspection-client-secret S (dovecot-secret)]
// It listens on the issuer host only (loopback).  Once it listens it prints
// one line "oauth2: ready <issuer>" on stdout and, with --state-file, writes
// a JSON file {pid, port, issuer, endpoints...} there (written to a
// temporary name, then renamed, so its appearance means ready).  Its log
// (every request and every token event) goes to stderr.
//
// Clients:
//   - the daemon: client_id/secret as above, confidential.  Registered with
//     token_endpoint_auth_method client_secret_basic; oidc-provider treats
//     client_secret_basic and client_secret_post as one family, so both
//     work.  Grants: refresh_token, authorization_code, client_credentials,
//     device_code.  Refresh tokens rotate: every refresh returns a new one
//     and the old one is dead (presenting it again revokes the whole grant,
//     as oidc-provider does on refresh token reuse).
//   - Dovecot: "dovecot"/"dovecot-secret", used only to introspect; it may
//     introspect the daemon client's ACCESS tokens (never refresh tokens,
//     so a refresh token is no password for IMAP).
// Scopes: openid, offline_access, mail.  Access tokens are opaque, live
// --access-ttl seconds, and are introspected with
//   {"active": true, "sub": <account>, "username": <account>,
//    "scope": "...", "client_id": "secintake", "exp": ..., ...}.
// Accounts: any account id exists (the mailbox login, e.g.
// security@example.org).  Storage: oidc-provider's in-memory adapter: the
// tokens live as long as the process.
//
// TEST-ONLY endpoints (they stand in for a human's browser consent and
// have no place in a real server):
//   POST /test/mint?account=A&scope=S   creates a Grant and a RefreshToken
//        through oidc-provider's own models for the daemon client;
//        scope defaults to "offline_access mail".  -> {"refresh_token": "..."}
//   POST /test/revoke-grant?account=A   revokes every grant of account A
//        (all its refresh and access tokens).  -> {"revoked": N}
//   POST /test/approve-device?user_code=C&account=A   approves a pending
//        device authorization (RFC 8628) as the user would in a browser.
//        -> {"approved": true}

import { createServer } from 'node:http';
import { renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OAUTH2_PORT ?? '0' },
    'issuer-host': { type: 'string', default: process.env.OAUTH2_ISSUER_HOST ?? '127.0.0.1' },
    'access-ttl': { type: 'string', default: process.env.OAUTH2_ACCESS_TTL ?? '3600' },
    'state-file': { type: 'string', default: process.env.OAUTH2_STATE_FILE },
    'client-id': { type: 'string', default: process.env.OAUTH2_CLIENT_ID ?? 'secintake' },
    'client-secret': { type: 'string', default: process.env.OAUTH2_CLIENT_SECRET ?? 'secintake-secret' },
    'introspection-client-id': { type: 'string', default: 'dovecot' },
    'introspection-client-secret': { type: 'string', default: 'dovecot-secret' },
  },
});

const host = args['issuer-host'];
const accessTtl = Number(args['access-ttl']);
if (!Number.isInteger(accessTtl) || accessTtl < 1) {
  console.error(`oauth2: --access-ttl must be a positive number of seconds, not ${args['access-ttl']}`);
  process.exit(2);
}
const clientId = args['client-id'];
const introspectorId = args['introspection-client-id'];
const MAIL_SCOPE = 'mail';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

const log = (...parts) => console.error(new Date().toISOString(), ...parts);

// The issuer needs the port, which is known only once the socket listens
// (port 0 = any free one): listen first, then build the provider.
const http = createServer();
let handler = (_req, res) => { res.statusCode = 503; res.end(); };
http.on('request', (req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  http.once('error', reject);
  http.listen(Number(args.port), host, resolve);
});
const { port } = http.address();
const issuer = `http://${host}:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: args['client-secret'],
      grant_types: ['refresh_token', 'authorization_code', 'client_credentials', DEVICE_GRANT],
      response_types: ['code'],
      redirect_uris: [`${issuer}/test/callback`],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: `openid offline_access ${MAIL_SCOPE}`,
    },
    {
      client_id: introspectorId,
      client_secret: args['introspection-client-secret'],
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Any account exists: its id is the mailbox login.
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
  // RFC 7662 names the resource owner's login "username"; Dovecot reads it.
  async extraTokenClaims(_ctx, token) {
    return token.accountId ? { username: token.accountId } : undefined;
  },
  scopes: ['openid', 'offline_access', MAIL_SCOPE],
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTtl,
    ClientCredentials: accessTtl,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    DeviceCode: 600,
    AuthorizationCode: 60,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    IdToken: 3600,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      // Dovecot may look at the daemon's access tokens, nothing else; a
      // client may always look at its own.
      async allowedPolicy(ctx, client, token) {
        if (client.clientId === introspectorId) {
          return token.clientId === clientId && token.kind === 'AccessToken';
        }
        return token.clientId === client.clientId;
      },
    },
  },
  pkce: { required: () => false },
});
provider.proxy = false;

for (const event of [
  'access_token.saved', 'access_token.destroyed', 'refresh_token.saved',
  'refresh_token.consumed', 'refresh_token.destroyed', 'grant.revoked',
  'grant.success', 'grant.error', 'introspection.error', 'revocation.error',
  'server_error', 'device_code.saved',
]) {
  provider.on(event, (...a) => {
    const err = a.find((x) => x instanceof Error);
    const tok = a.find((x) => x?.jti);
    let what = '';
    if (err) {
      what = `${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`;
      if (err.error_detail) what += ` detail: ${err.error_detail}`;
    } else if (tok) {
      what = `jti=${tok.jti.slice(0, 8)}... account=${tok.accountId ?? '-'}`;
    } else if (typeof a[1] === 'string') {
      what = a[1]; // grant.revoked: (ctx, grantId)
    }
    log('event', event, what);
  });
}

// ------------------------------------------------------- test-only API --

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

// All grants handed out by /test/mint and /test/approve-device, by account.
const grantsByAccount = new Map();

async function newGrant(account, scope) {
  const grant = new provider.Grant({ accountId: account, clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  if (!grantsByAccount.has(account)) grantsByAccount.set(account, new Set());
  grantsByAccount.get(account).add(grantId);
  return grantId;
}

async function testApi(req, res, url) {
  if (req.method !== 'POST') return json(res, 405, { error: 'use POST' });
  const q = url.searchParams;
  const account = q.get('account');
  if (!account) return json(res, 400, { error: 'account= missing' });
  switch (url.pathname) {
    case '/test/mint': {
      const scope = q.get('scope') ?? `offline_access ${MAIL_SCOPE}`;
      const client = await provider.Client.find(clientId);
      const grantId = await newGrant(account, scope);
      const rt = new provider.RefreshToken({
        accountId: account,
        client,
        grantId,
        scope,
        gty: 'authorization_code',
        authTime: Math.floor(Date.now() / 1000),
      });
      const refreshToken = await rt.save();
      log('test: minted a refresh token for', account, 'scope', JSON.stringify(scope));
      return json(res, 200, { refresh_token: refreshToken });
    }
    case '/test/revoke-grant': {
      const ids = [...(grantsByAccount.get(account) ?? [])];
      for (const id of ids) {
        // What oidc-provider itself does on revocation: the grant and
        // every token issued under it.
        await Promise.all([
          provider.Grant.adapter.destroy(id),
          provider.RefreshToken.revokeByGrantId(id),
          provider.AccessToken.revokeByGrantId(id),
        ]);
      }
      grantsByAccount.delete(account);
      log('test: revoked', ids.length, 'grant(s) of', account);
      return json(res, 200, { revoked: ids.length });
    }
    case '/test/approve-device': {
      const userCode = (q.get('user_code') ?? '').toUpperCase().replace(/\W/g, '');
      const code = await provider.DeviceCode.findByUserCode(userCode);
      if (!code || code.accountId || code.error) {
        return json(res, 404, { error: 'no pending device authorization with that user_code' });
      }
      code.accountId = account;
      code.authTime = Math.floor(Date.now() / 1000);
      // The scope the device asked for (RFC 8628 3.1) is granted as is.
      code.scope = code.scope ?? code.params?.scope ?? `offline_access ${MAIL_SCOPE}`;
      code.grantId = await newGrant(account, code.scope);
      await code.save();
      log('test: approved device code', userCode, 'for', account);
      return json(res, 200, { approved: true });
    }
    default:
      return json(res, 404, { error: 'unknown test endpoint' });
  }
}

const providerCallback = provider.callback();
handler = (req, res) => {
  const started = Date.now();
  res.on('finish', () => log(req.method, req.url.replace(/token=[^&]*/g, 'token=...'), res.statusCode, `${Date.now() - started}ms`));
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/test/')) {
    testApi(req, res, url).catch((e) => {
      log('test endpoint failed:', e);
      json(res, 500, { error: String(e) });
    });
    return;
  }
  providerCallback(req, res);
};

const state = {
  pid: process.pid,
  port,
  issuer,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  revocation_endpoint: `${issuer}/token/revocation`,
  device_authorization_endpoint: `${issuer}/device/auth`,
  client_id: clientId,
  introspection_client_id: introspectorId,
  access_ttl: accessTtl,
};
if (args['state-file']) {
  writeFileSync(`${args['state-file']}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${args['state-file']}.tmp`, args['state-file']);
}
log('listening', JSON.stringify(state));
console.log(`oauth2: ready ${issuer}`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { log('stopping on', sig); process.exit(0); });
}
