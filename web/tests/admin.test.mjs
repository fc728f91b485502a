// Account and administration: storage against quota, change password, and the users
// page (disable, enable, set a password, add a user with a quota).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launch, newPage, signIn, ADMIN_PASSWORD } from './harness.mjs';

let server, browser;
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('ivy', 'ivy-password-1', ['--quota', String(2 * 1024 ** 3)]);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the account page shows usage against the quota and changes the password', async () => {
  await server.require('browser sessions');
  const page = await newPage(browser, server);
  await signIn(page, 'ivy', 'ivy-password-1');
  await page.goto(server.url + '/#/account');
  await page.getByRole('main').getByText(/used of 2\.0 GB/).waitFor();
  await page.getByLabel('Current password').fill('ivy-password-1');
  await page.getByLabel('New password').fill('ivy-password-2');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByText('Password changed.', { exact: false }).waitFor();
  await page.context().close();
  const again = await newPage(browser, server);
  await signIn(again, 'ivy', 'ivy-password-2');
  await again.context().close();
});

test('an administrator disables and enables a user and sets a password', async () => {
  await server.require('browser sessions');
  const page = await newPage(browser, server);
  await signIn(page, 'admin', ADMIN_PASSWORD);
  await page.goto(server.url + '/#/admin');
  await page.getByRole('button', { name: 'Disable ivy' }).click();
  await page.getByRole('button', { name: 'Enable ivy' }).waitFor();
  const r = await fetch(server.url + '/api/v1/auth/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'ivy', password: 'ivy-password-2' }) });
  assert.equal(r.status, 401, 'a disabled user cannot sign in');
  await page.getByRole('button', { name: 'Enable ivy' }).click();
  await page.getByRole('button', { name: 'Set password of ivy' }).click();
  await page.getByRole('dialog').getByLabel('New password').fill('ivy-password-3');
  await page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
  await page.getByText('Password set.').waitFor();
  const ok = await fetch(server.url + '/api/v1/auth/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'ivy', password: 'ivy-password-3' }) });
  assert.equal(ok.status, 200);
  await page.context().close();
});

test('an administrator adds a user with a quota', async () => {
  await server.require('browser sessions');
  await server.require('adding users over the API');
  const page = await newPage(browser, server);
  await signIn(page, 'admin', ADMIN_PASSWORD);
  await page.goto(server.url + '/#/admin');
  await page.getByLabel('Name', { exact: true }).fill('jack');
  await page.getByLabel('Password', { exact: true }).fill('jack-password-1');
  await page.getByLabel('Quota, GiB').fill('1');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.getByRole('cell', { name: 'jack', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Set quota of jack' }).click();
  await page.getByRole('dialog').getByLabel(/Quota in GiB/).fill('3');
  await page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
  await page.getByText('Quota set.').waitFor();
  await page.getByRole('row', { name: /jack/ }).getByText('3.0 GB').waitFor();
  await page.context().close();
});

test('the users page shows the last storage check', async () => {
  await server.require('browser sessions');
  server.run(['admin', 'fsck', '--data-dir', server.dataDir]);
  const page = await newPage(browser, server);
  await signIn(page, 'admin', ADMIN_PASSWORD);
  await page.goto(server.url + '/#/admin');
  await page.getByTestId('fsck').getByText(/Clean/).waitFor();
  await page.context().close();
});
