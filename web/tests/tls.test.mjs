// The web interface served over HTTPS by `cairn serve` itself (no proxy): sign-in gives
// a Secure cookie, and a change made by the CLI shows live (the notification socket
// over wss://).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row } from './harness.mjs';

// The certificate is self-signed: this process's own checks (`require`, `healthz`)
// must not refuse it. Each test file runs in a process of its own.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

let server, browser;
const PW = 'tina-password-1';
before(async () => {
  server = await Server.start({ tls: true });
  browser = await launch();
  server.addUser('tina', PW);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('over HTTPS: a Secure session cookie, and a live update over wss://', async () => {
  assert.ok(server.url.startsWith('https://'), server.url);
  const page = await newPage(browser, server, { ignoreHTTPSErrors: true });
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await signIn(page, 'tina', PW);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.httpOnly);
  assert.ok(session, `a session cookie (${JSON.stringify(cookies)})`);
  assert.equal(session.secure, true, 'the session cookie is Secure');
  await page.waitForTimeout(500); // the notification socket is open
  const local = join(server.dir, 'over-tls.txt');
  writeFileSync(local, 'over TLS');
  server.cli('tina', PW, ['put', local, '/over-tls.txt']);
  await row(page, 'over-tls.txt').waitFor({ timeout: 5000 });
  assert.ok(sockets.some((u) => u.startsWith('wss://')), `the page listens over wss:// (${sockets})`);
  await page.context().close();
});
