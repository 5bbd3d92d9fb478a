// A real OpenID Connect provider (node-oidc-provider) for the portal's sign-in tests, started by
// tests/oidc_provider.py. It stands in for the force's identity provider (Entra ID, Keycloak, ADFS)
// the way Ceph RGW stands in for S3: the portal talks to it over HTTP exactly as it would in service.
//
//   node provider.mjs <config.json>
//
// The config file names the one client (client_id, client_secret, redirect_uris), the claim that
// carries roles (roles_claim) and the test people (username, password, sub, name, roles). The provider
// listens on a free loopback port and prints one JSON line, {"issuer": "http://127.0.0.1:<port>"},
// once it answers; everything else it says goes to stderr.
//
// The login page is our own minimal interaction: a form that checks the person's password (the
// library's built-in "dev interactions" accept any password, which would prove nothing) and a link to
// refuse. Consent is given by the administrator for this first-party client, as Entra ID's admin
// consent or Keycloak's "consent required: off" do, so no consent page is shown.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const rolesClaim = config.roles_claim;
const people = new Map(config.users.map((person) => [person.username, person]));
const bySubject = new Map(config.users.map((person) => [person.sub, person]));

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, clientId, problem) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in to ${escapeHtml(clientId)}</h1>
${problem ? `<p class="error">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Username <input name="username" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>
</body></html>`;
}

async function formOf(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function findAccount(_ctx, sub) {
  const person = bySubject.get(sub);
  if (!person) return undefined;
  return {
    accountId: sub,
    async claims() {
      const claims = { sub, preferred_username: person.username, name: person.name };
      if (person.roles !== undefined) claims[rolesClaim] = person.roles;
      return claims;
    },
  };
}

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: config.client.client_id,
      client_secret: config.client.client_secret,
      redirect_uris: config.client.redirect_uris,
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  findAccount,
  // the roles claim comes with every ID token, as Entra ID's app roles and Keycloak's client roles do
  claims: {
    openid: ['sub', rolesClaim],
    profile: ['preferred_username', 'name'],
  },
  // scope-requested claims in the ID token itself (the portal reads the signed ID token, not userinfo)
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  jwks: { keys: [{ ...signingKey, use: 'sig', kid: randomBytes(8).toString('hex') }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Interaction: 600, Session: 600, Grant: 600 },
  async loadExistingGrant(ctx) {
    const known = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (known) return ctx.oidc.provider.Grant.find(known);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile');
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
  if (!match) return next();
  const [, , step] = match;
  ctx.set('cache-control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (!step && ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = loginPage(details.uid, details.params.client_id);
    return undefined;
  }
  if (step === 'abort' && ctx.method === 'GET') {
    return provider.interactionFinished(ctx.req, ctx.res, {
      error: 'access_denied',
      error_description: 'the person refused to sign in',
    });
  }
  if (step === 'login' && ctx.method === 'POST') {
    const form = await formOf(ctx.req);
    const person = people.get(form.get('username') || '');
    if (!person || person.password !== form.get('password')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, details.params.client_id, 'Wrong username or password.');
      return undefined;
    }
    return provider.interactionFinished(
      ctx.req,
      ctx.res,
      { login: { accountId: person.sub, amr: ['pwd'] } },
      { mergeWithLastSubmission: false },
    );
  }
  return next();
});

server.on('request', provider.callback());
// the test run that started us keeps our stdin open; when it goes (even killed), so do we
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
