// App passwords on the account page: made (shown once, with a copy button), listed,
// refused twice under one name, and revoked; the CLI sees the same list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launch, newPage, signIn, axe } from './harness.mjs';

const PW = 'kim-password-1';
let server, browser;
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('kim', PW);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const cliNames = () => JSON.parse(server.cli('kim', PW, ['app-password', 'list', '--json'])).map((a) => a.name);

test('an app password is made and shown once, listed, and revoked', async () => {
  await server.require('browser sessions');
  await server.require('app passwords');
  const page = await newPage(browser, server, { permissions: ['clipboard-read', 'clipboard-write'] });
  await signIn(page, 'kim', PW);
  await page.goto(server.url + '/#/account');
  await page.getByText('No app passwords yet.').waitFor();
  await page.getByLabel('App password name').fill('phone');
  await page.getByRole('button', { name: 'Create app password' }).click();
  const secret = (await page.getByTestId('new-app-password').textContent()).trim();
  assert.match(secret, /^([2-9a-hjkmnp-z]{4}-){7}[2-9a-hjkmnp-z]{4}$/);
  await page.getByText('shown only this once').waitFor();
  assert.deepEqual(await axe(page), [], 'the account page with a new app password');
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByText('Password copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);

  // Listed (never used yet), here and to the CLI.
  await page.getByRole('row', { name: /phone/ }).getByText('never').waitFor();
  assert.deepEqual(cliNames(), ['phone']);
  // No script error (the sign-in's own 401 before the session is a console line).
  assert.deepEqual(page.errors.filter((e) => !e.startsWith('Failed to load resource')), []);

  // Once dismissed, the secret is gone from the page for good.
  await page.getByRole('button', { name: 'Done' }).click();
  assert.equal(await page.getByTestId('new-app-password').count(), 0);
  await page.reload();
  await page.getByRole('row', { name: /phone/ }).waitFor();
  assert.ok(!(await page.content()).includes(secret), 'the secret is not shown again');

  // A name is the account's once: the server's reason is shown.
  await page.getByLabel('App password name').fill('phone');
  await page.getByRole('button', { name: 'Create app password' }).click();
  await page.getByRole('alert').getByText(/already exists/).waitFor();

  await page.getByRole('button', { name: 'Revoke phone' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('App password “phone” revoked.').waitFor();
  await page.getByText('No app passwords yet.').waitFor();
  assert.deepEqual(cliNames(), []);
  assert.deepEqual(page.dialogs, [], 'no alert fired');
  await page.context().close();
});
