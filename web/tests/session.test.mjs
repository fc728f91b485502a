// Sign in and out, an expired session that loses nothing typed, a hostile file name
// shown as text, and the accessibility check and screenshots of the main views.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, axe, shot, row, cspViolations, ADMIN_PASSWORD } from './harness.mjs';

let server, browser;
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('alice', 'alice-password-1');
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('sign in with a wrong password, then the right one, then sign out', async () => {
  await server.require('web assets');
  await server.require('browser sessions');
  const page = await newPage(browser, server);
  await page.goto(server.url + '/');
  await page.getByLabel('User name').fill('alice');
  await page.getByLabel('Password', { exact: true }).fill('wrong-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Wrong user name or password' }).waitFor();
  await page.getByLabel('Password', { exact: true }).fill('alice-password-1');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
  await page.getByTestId('empty').waitFor();
  const cookies = await page.context().cookies();
  const c = cookies.find((x) => x.name === 'cairn_session');
  assert.ok(c, 'a session cookie is set');
  assert.ok(c.httpOnly, 'the cookie is HttpOnly');
  assert.notEqual(c.sameSite, 'None');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  const r = await page.evaluate(() => fetch('/api/v1/auth/session').then((r) => r.status));
  assert.equal(r, 401, 'the session is gone after signing out');
  await page.context().close();
});

test('an expired session asks to sign in again and loses nothing typed', async () => {
  await server.require('browser sessions');
  const page = await newPage(browser, server);
  await signIn(page, 'alice', 'alice-password-1');
  await page.getByRole('button', { name: 'New folder' }).click();
  const input = page.getByLabel('Folder name');
  await input.fill('Typed before expiry');
  // The session ends (as after 12 idle hours): the cookie is gone.
  await page.context().clearCookies();
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.getByLabel('User name').fill('alice');
  await page.getByLabel('Password', { exact: true }).fill('alice-password-1');
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The request that met the 401 is retried: the folder exists with the typed name.
  await row(page, 'Typed before expiry').waitFor();
  assert.deepEqual(page.dialogs, []);
  await page.context().close();
});

test('a hostile file name is shown as text and runs nothing', async () => {
  await server.require('browser sessions');
  const hostile = '<img src=x onerror=alert(1)>.txt';
  const local = join(server.dir, 'hostile.txt');
  writeFileSync(local, 'hello');
  server.cli('alice', 'alice-password-1', ['put', local, '/' + hostile]);
  const page = await newPage(browser, server);
  await signIn(page, 'alice', 'alice-password-1');
  await row(page, hostile).waitFor();
  assert.equal(await page.locator('img[src=x]').count(), 0, 'no img element was made from the name');
  // Open it and rename it: the name travels through dialogs as text too.
  await row(page, hostile).click();
  await page.keyboard.press('F2');
  assert.equal(await page.getByLabel('New name').inputValue(), hostile);
  await page.keyboard.press('Escape');
  await page.waitForTimeout(300);
  assert.deepEqual(page.dialogs, [], 'no alert fired');
  await page.context().close();
});

test('main views: no serious accessibility violation; screenshots at desktop and phone widths', async () => {
  await server.require('browser sessions');
  // Something to look at in the screenshots.
  for (const d of ['Documents', 'Photos', 'Projects']) server.cli('admin', ADMIN_PASSWORD, ['mkdir', '/' + d]);
  for (const [name, text] of [['Budget 2026.xlsx', 'x'.repeat(48000)], ['notes.md', '# Notes\n'], ['report.pdf', 'x'.repeat(230000)], ['main.rs', 'fn main() {}\n'], ['holiday.jpg', 'x'.repeat(1200000)]]) {
    const local = join(server.dir, 'shot-' + name);
    writeFileSync(local, text);
    server.cli('admin', ADMIN_PASSWORD, ['put', local, '/' + name]);
  }
  server.cli('alice', 'alice-password-1', ['mkdir', '/Shared with admin']);
  server.cli('alice', 'alice-password-1', ['share', 'add', '/Shared with admin', '--with', 'admin', '--role', 'editor']);
  for (const [w, h, suffix] of [[1280, 800, 'desktop'], [390, 844, 'phone']]) {
    for (const scheme of ['light', 'dark']) {
      const page = await newPage(browser, server, { viewport: { width: w, height: h }, colorScheme: scheme });
      await page.goto(server.url + '/');
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
      if (scheme === 'light') await shot(page, `signin-${suffix}`);
      assert.deepEqual(await axe(page), [], `sign-in page (${suffix}, ${scheme})`);
      await signIn(page, 'admin', ADMIN_PASSWORD);
      for (const [hash, name] of [['#/files/', 'files'], ['#/trash', 'trash'], ['#/links', 'links'], ['#/account', 'account'], ['#/admin', 'admin']]) {
        await page.goto(server.url + '/' + hash);
        await page.locator('main h1, main [data-testid=empty], main [data-testid=list]').first().waitFor();
        await page.waitForTimeout(200);
        assert.deepEqual(await axe(page), [], `${name} (${suffix}, ${scheme})`);
        if (scheme === 'light' || name === 'files') await shot(page, `${name}-${suffix}${scheme === 'dark' ? '-dark' : ''}`);
      }
      assert.deepEqual(await cspViolations(page), [], 'nothing broke the Content-Security-Policy');
      await page.context().close();
    }
  }
});
