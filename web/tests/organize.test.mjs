// Organize: new folder, rename, move by drag and drop (onto a folder and onto a
// breadcrumb), delete and Undo, restore from the trash, restore an old version.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row } from './harness.mjs';

let server, browser, page;
const PW = 'carol-password-1';
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('carol', PW);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const put = (remote, text) => {
  const local = join(server.dir, 'put-' + Math.random().toString(36).slice(2));
  writeFileSync(local, text);
  server.cli('carol', PW, ['put', local, remote]);
};
const get = (remote) => {
  const local = join(server.dir, 'get-' + Math.random().toString(36).slice(2));
  server.cli('carol', PW, ['get', remote, local]);
  return readFileSync(local, 'utf8');
};
const ls = (remote) => JSON.parse(server.cli('carol', PW, ['ls', remote, '--json']));
const names = (remote) => {
  const j = ls(remote);
  return (Array.isArray(j) ? j : j.entries).map((e) => e.name).sort();
};

test('new folder, rename with F2, move by drag and drop onto a folder and a breadcrumb', async () => {
  await server.require('browser sessions');
  put('/notes.txt', 'notes');
  page = await newPage(browser, server);
  await signIn(page, 'carol', PW);
  await row(page, 'notes.txt').waitFor();

  await page.getByRole('button', { name: 'New folder' }).click();
  await page.getByLabel('Folder name').fill('Projects');
  await page.getByRole('button', { name: 'Create' }).click();
  await row(page, 'Projects').waitFor();

  await row(page, 'notes.txt').click();
  await page.keyboard.press('F2');
  await page.getByLabel('New name').fill('plans.txt');
  await page.keyboard.press('Enter');
  await row(page, 'plans.txt').waitFor();

  await row(page, 'plans.txt').dragTo(row(page, 'Projects'));
  await row(page, 'plans.txt').waitFor({ state: 'detached' });
  assert.deepEqual(names('/Projects'), ['plans.txt']);

  // Into the folder, then drag the file back onto the "My files" breadcrumb.
  await row(page, 'Projects').dblclick();
  await row(page, 'plans.txt').waitFor();
  await row(page, 'plans.txt').dragTo(page.getByRole('navigation', { name: 'Breadcrumbs' }).getByRole('link', { name: 'My files' }));
  await row(page, 'plans.txt').waitFor({ state: 'detached' });
  assert.deepEqual(names('/'), ['Projects', 'plans.txt']);
  await page.getByRole('link', { name: 'My files' }).first().click();
  await row(page, 'plans.txt').waitFor();
});

test('delete, then Undo in the toast; delete again, then restore from the trash', async () => {
  await row(page, 'plans.txt').click();
  await page.keyboard.press('Delete');
  await row(page, 'plans.txt').waitFor({ state: 'detached' });
  await page.getByRole('button', { name: 'Undo' }).click();
  await row(page, 'plans.txt').waitFor();

  await row(page, 'plans.txt').click();
  await page.getByRole('button', { name: 'Delete' }).click();
  await row(page, 'plans.txt').waitFor({ state: 'detached' });
  await page.getByRole('link', { name: 'Trash' }).click();
  await page.getByRole('button', { name: 'Restore plans.txt' }).click();
  await page.getByText('The trash is empty.').waitFor();
  assert.deepEqual(names('/'), ['Projects', 'plans.txt']);
  assert.equal(get('/plans.txt'), 'notes');
});

test('restore an old version', async () => {
  put('/draft.md', 'first version');
  await new Promise((r) => setTimeout(r, 20));
  const local = join(server.dir, 'v2');
  writeFileSync(local, 'second version');
  server.cli('carol', PW, ['put', local, '/draft.md']);
  assert.equal(get('/draft.md'), 'second version');
  await page.getByRole('link', { name: 'My files' }).first().click();
  await row(page, 'draft.md').click();
  await page.getByRole('button', { name: 'Versions' }).click();
  const dialog = page.getByRole('dialog', { name: 'Versions of draft.md' });
  // The old version downloads as it was, before any restore.
  const links = dialog.getByRole('link', { name: /^Download the version of/ });
  await links.nth(1).waitFor();
  assert.equal(await links.count(), 2);
  const [download] = await Promise.all([page.waitForEvent('download'), links.nth(1).click()]);
  assert.equal(readFileSync(await download.path(), 'utf8'), 'first version');
  await dialog.getByRole('button', { name: 'Restore' }).click();
  await page.getByText(/Restored the version/).waitFor();
  assert.equal(get('/draft.md'), 'first version');
  await page.keyboard.press('Escape');
});

test('multi-select with shift and ctrl, select all, copy', async () => {
  await page.getByRole('link', { name: 'My files' }).first().click();
  await row(page, 'Projects').click();
  await row(page, 'plans.txt').click({ modifiers: ['Shift'] });
  assert.equal(await page.locator('[role=row][aria-selected=true]').count(), 3);
  await row(page, 'draft.md').click({ modifiers: ['Control'] });
  assert.equal(await page.locator('[role=row][aria-selected=true]').count(), 2);
  await page.keyboard.press('Control+a');
  assert.equal(await page.locator('[role=row][aria-selected=true]').count(), 3);
  await row(page, 'plans.txt').click();
  await page.getByRole('button', { name: 'Copy', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: /Copy/ });
  await dialog.getByRole('button', { name: 'Projects' }).click();
  await dialog.getByRole('button', { name: 'Copy here' }).click();
  await page.getByText('Copied.').waitFor();
  assert.deepEqual(names('/Projects'), ['plans.txt']);
  assert.deepEqual(page.dialogs, []);
});
