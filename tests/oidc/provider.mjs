// A real OpenID Connect provider for Dev8's tests: npm `oidc-provider` with
// its development interactions (a login form that accepts any login and
// password, then a consent form). It listens on 127.0.0.1 on a free port,
// prints {"issuer": ...} as one line, then reads one JSON line from stdin
// with the client to register ({clientId, clientSecret, redirectUri,
// email}) — the redirect URI is only known once the app under test has
// bound its port. It exits when stdin closes (the test ends).
//
// Every account is the same fixed person with a verified email.

import http from 'node:http';
import readline from 'node:readline';
// Installed with the rest of the Node test tooling in tests/js.
const { default: Provider } = await import(
  new URL('../js/node_modules/oidc-provider/lib/index.js', import.meta.url)
);

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const lines = readline.createInterface({ input: process.stdin });
lines.on('close', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
const first = await new Promise((resolve) => lines.once('line', resolve));
const { clientId, clientSecret, redirectUri, email } = JSON.parse(first);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email, email_verified: true, name: 'Ada Lovelace' };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // As the spec says (OpenID Connect Core 5.4) and the library's default:
  // with an access token issued, scope claims are only in UserInfo.
  conformIdTokenClaims: true,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['dev8-tests-only-cookie-key'] },
});
// Quiet: the dev-interactions warning is expected here.
provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err}\n`));
server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
