// Sharing: a password link opened in a fresh browser context, a folder shared with a
// second user who sees it, and a live update when the CLI uploads into the open folder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row, shot, axe } from './harness.mjs';

let server, browser;
const PW = 'erin-password-1';
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('erin', PW);
  server.addUser('frank', 'frank-password-1');
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const put = (user, pw, remote, text) => {
  const local = join(server.dir, 'put-' + Math.random().toString(36).slice(2));
  writeFileSync(local, text);
  server.cli(user, pw, ['put', local, remote]);
};

test('a password link opened in a fresh browser context', async () => {
  await server.require('browser sessions');
  put('erin', PW, '/report.txt', 'the report');
  const page = await newPage(browser, server);
  await signIn(page, 'erin', PW);
  await row(page, 'report.txt').click();
  await page.getByRole('button', { name: 'Link' }).click();
  const dialog = page.getByRole('dialog', { name: /Link to/ });
  assert.deepEqual(await axe(page), [], 'the link dialog');
  await dialog.getByLabel('Password (optional)').fill('link-secret');
  await dialog.getByRole('button', { name: 'Create link' }).click();
  const url = await dialog.getByTestId('link-url').inputValue();
  assert.match(url, /\/s\//);
  await page.context().close();

  const stranger = await newPage(browser, server);
  const linkUrl = url.replace(/^https?:\/\/[^/]+/, server.url);
  await stranger.goto(linkUrl);
  const before = await stranger.context().request.get(linkUrl + '/download');
  assert.notEqual(before.status(), 200, 'nothing is served before the password');
  await stranger.locator('input[type=password]').fill('link-secret');
  await stranger.locator('input[type=password]').press('Enter');
  await stranger.waitForLoadState();
  assert.match(await stranger.locator('body').innerText(), /report\.txt/);
  const after = await stranger.context().request.get(linkUrl + '/download');
  assert.equal(after.status(), 200);
  assert.equal(await after.text(), 'the report');

  // The owner revokes it on the links page; the stranger gets nothing more.
  const owner = await newPage(browser, server);
  await signIn(owner, 'erin', PW);
  await owner.goto(server.url + '/#/links');
  await owner.getByRole('button', { name: 'Revoke' }).click();
  await owner.getByText('Link revoked.').waitFor();
  const revoked = await stranger.context().request.get(linkUrl + '/download');
  assert.notEqual(revoked.status(), 200, 'a revoked link serves nothing');
  await owner.context().close();
  await stranger.context().close();
});

test('a folder shared with a second user, who sees it', async () => {
  await server.require('browser sessions');
  server.cli('erin', PW, ['mkdir', '/Team']);
  put('erin', PW, '/Team/plan.txt', 'plan');
  const page = await newPage(browser, server);
  await signIn(page, 'erin', PW);
  await row(page, 'Team').click();
  await page.getByRole('button', { name: 'Share' }).click();
  const dialog = page.getByRole('dialog', { name: /Share/ });
  await dialog.getByLabel('User name').fill('frank');
  await dialog.getByLabel('Role').selectOption('editor');
  await dialog.getByRole('button', { name: 'Share', exact: true }).click();
  await dialog.getByText('frank').waitFor();
  assert.deepEqual(await axe(page), [], 'the share dialog');
  await page.context().close();

  const other = await newPage(browser, server);
  await signIn(other, 'frank', 'frank-password-1');
  await row(other, 'Team').waitFor();
  assert.match(await row(other, 'Team').innerText(), /erin/);
  await row(other, 'Team').dblclick();
  await row(other, 'plan.txt').waitFor();
  // The owner adds a file: the member's open view of the shared folder shows it.
  await other.waitForTimeout(300);
  put('erin', PW, '/Team/minutes.txt', 'minutes');
  await row(other, 'minutes.txt').waitFor({ timeout: 5000 });
  assert.equal(await other.getByRole('button', { name: 'New folder' }).count(), 1, 'an editor may add');
  // A viewer is offered no action that writes.
  server.cli('erin', PW, ['mkdir', '/Gallery']);
  server.cli('erin', PW, ['share', 'add', '/Gallery', '--with', 'frank', '--role', 'viewer']);
  await other.goto(server.url + '/#/files/');
  await row(other, 'Gallery').dblclick();
  await other.getByTestId('empty').waitFor();
  assert.equal(await other.getByRole('button', { name: 'New folder' }).count(), 0, 'a viewer may not add');
  await other.context().close();
});

test('a live update appears when the CLI uploads into the open folder', async () => {
  await server.require('browser sessions');
  const page = await newPage(browser, server);
  await signIn(page, 'erin', PW);
  await row(page, 'report.txt').waitFor();
  await page.waitForTimeout(500); // the notification socket is open
  const t0 = Date.now();
  put('erin', PW, '/live.txt', 'live');
  await row(page, 'live.txt').waitFor({ timeout: 5000 });
  const ms = Date.now() - t0;
  console.log(`live update shown ${ms} ms after the CLI started`);
  await shot(page, 'live-desktop');
  await page.context().close();
});
