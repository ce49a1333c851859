// The OpenID provider of the integration tests: node-oidc-provider (OpenID Certified) on 127.0.0.1,
// with a few users and their groups, a password form of its own (no dev interactions) and the
// hub as its one client. Settings come as JSON in OIDC_TEST_SETTINGS:
//   {port, client_id, client_secret, redirect_uris, code_ttl, users: {name: {password, groups}}}
// It prints "ready ISSUER" once it listens.
import http from 'node:http';
import Provider from 'oidc-provider';

const settings = JSON.parse(process.env.OIDC_TEST_SETTINGS);
const issuer = `http://127.0.0.1:${settings.port}`;
const users = settings.users;

const provider = new Provider(issuer, {
  clients: [{
    client_id: settings.client_id,
    client_secret: settings.client_secret,
    redirect_uris: settings.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups'],
  features: { devInteractions: { enabled: false } },
  findAccount: async (ctx, id) => (users[id] ? {
    accountId: id,
    claims: async () => ({ sub: id, preferred_username: id, name: id, groups: users[id].groups }),
  } : undefined),
  conformIdTokenClaims: false,  // the ID token carries the scopes' claims too (for claims_from: id_token)
  ttl: { AuthorizationCode: settings.code_ttl, AccessToken: 600, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
  cookies: { keys: ['d2lhub-test-only'] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // The hub is a first-party client: no consent screen, every scope granted.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile groups');
    await grant.save();
    return grant;
  },
});

const page = (uid, message) => `<!doctype html><html lang="en"><head><title>Test university sign-in</title></head>
<body><main><h1>Test university sign-in</h1>${message ? `<p role="alert">${message}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label>University ID <input name="login" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></main></body></html>`;

async function form(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res) {
  const { uid } = await provider.interactionDetails(req, res);
  if (req.method === 'POST' && req.url.endsWith('/login')) {
    const data = await form(req);
    const user = users[data.get('login')];
    if (!user || user.password !== data.get('password')) {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(page(uid, 'Wrong university ID or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: data.get('login') } }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end(page(uid, ''));
}

const callback = provider.callback();
http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => { res.writeHead(400); res.end(String(err)); });
  } else {
    callback(req, res);
  }
}).listen(settings.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
