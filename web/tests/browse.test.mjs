// Browsing: folders first and sorting, keyboard navigation, previews shown as text,
// the grid view with thumbnails, search as you type, and a folder downloaded as a zip.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row, webDir, axe } from './harness.mjs';

let server, browser, page;
const PW = 'hank-password-1';
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('hank', PW);
  const put = (remote, data) => {
    const local = join(server.dir, 'f-' + Math.random().toString(36).slice(2));
    writeFileSync(local, data);
    server.cli('hank', PW, ['put', local, remote]);
  };
  server.cli('hank', PW, ['mkdir', '/Zeta']);
  server.cli('hank', PW, ['mkdir', '/alpha']);
  put('/big.txt', 'x'.repeat(5000));
  put('/small.txt', 'y');
  put('/notes.md', '# Title\n\n<script>alert(1)</script> **bold**\n');
  put('/Zeta/inside.txt', 'inside');
  // The app's own icon is a real PNG to make a thumbnail of.
  const png = readdirSync(join(webDir, 'dist/assets')).find((f) => f.startsWith('icon-192'));
  put('/logo.png', readFileSync(join(webDir, 'dist/assets', png)));
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const order = async () => page.locator('[role=row][data-path] .name').allInnerTexts();

test('folders first, then files; sort by name, size and date', async () => {
  await server.require('browser sessions');
  page = await newPage(browser, server);
  await signIn(page, 'hank', PW);
  await page.evaluate(() => { localStorage.removeItem('cairn.sort'); localStorage.removeItem('cairn.dir'); });
  await page.reload();
  await row(page, 'small.txt').waitFor();
  assert.deepEqual(await order(), ['alpha', 'Zeta', 'big.txt', 'logo.png', 'notes.md', 'small.txt']);
  await page.getByRole('columnheader', { name: 'Size' }).getByRole('button').click();
  const bySize = await order();
  assert.deepEqual(bySize.slice(0, 2), ['alpha', 'Zeta']);
  assert.equal(bySize[bySize.length - 1], 'big.txt');
  await page.getByRole('columnheader', { name: 'Size' }).getByRole('button').click();
  assert.equal((await order())[2], 'big.txt', 'descending puts the largest file first, after the folders');
  await page.getByRole('columnheader', { name: 'Name' }).getByRole('button').click();
});

test('keyboard: arrows move, Enter opens, Backspace goes up, Escape closes a dialog', async () => {
  await page.getByTestId('list').focus();
  await page.keyboard.press('Home');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.getByTestId('list').getAttribute('aria-activedescendant'), 'row-1');
  await page.keyboard.press('Enter');
  await row(page, 'inside.txt').waitFor();
  await page.keyboard.press('Backspace');
  await row(page, 'small.txt').waitFor();
  await page.getByTestId('list').focus();
  await page.keyboard.press('F2');
  const dialog = page.getByRole('dialog', { name: 'Rename' });
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'list', 'focus came back to the list');
});

test('the context menu: right click or Shift+F10, arrows, Escape', async () => {
  await row(page, 'small.txt').click({ button: 'right' });
  const menu = page.getByRole('menu', { name: 'Actions' });
  await menu.waitFor();
  await menu.getByRole('menuitem', { name: 'Rename' }).click();
  await page.getByRole('dialog', { name: 'Rename' }).waitFor();
  await page.keyboard.press('Escape');
  await page.getByTestId('list').focus();
  await page.keyboard.press('Shift+F10');
  await menu.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Open');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Download');
  assert.deepEqual(await axe(page), []);
  await page.keyboard.press('Escape');
  await menu.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'list');
});

test('a Markdown file is previewed as plain text', async () => {
  await row(page, 'notes.md').dblclick();
  const dialog = page.getByRole('dialog', { name: 'notes.md' });
  await dialog.locator('pre').filter({ hasText: '<script>alert(1)</script> **bold**' }).waitFor();
  assert.equal(await dialog.locator('script, strong').count(), 0);
  await page.keyboard.press('Escape');
  assert.deepEqual(page.dialogs, []);
});

test('search as you type finds files by name', async () => {
  await server.require('search');
  await page.getByTestId('search').fill('insi');
  await page.locator('.results .name', { hasText: 'inside.txt' }).waitFor();
  assert.match(page.url(), /#\/search\?q=insi/);
  // A result opens its folder with the file selected.
  await page.locator('.results .result', { hasText: 'inside.txt' }).click();
  await page.locator('[role=row][aria-selected=true][data-path="/Zeta/inside.txt"]').waitFor();
});

test('a folder downloads as a zip', async () => {
  await server.require('zip');
  await page.goto(server.url + '/#/files/');
  await row(page, 'Zeta').click();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download' }).click()]);
  const path = await download.path();
  const bytes = readFileSync(path);
  assert.equal(bytes.subarray(0, 2).toString(), 'PK', 'a zip arrived');
});

test('the grid view shows thumbnails', async () => {
  await server.require('thumbnails');
  await page.goto(server.url + '/#/files/');
  await row(page, 'logo.png').waitFor();
  await page.getByRole('button', { name: 'Grid view' }).click();
  const img = page.locator('.cell .thumb img').first();
  await img.waitFor();
  await page.waitForFunction(() => { const i = document.querySelector('.cell .thumb img'); return i && i.complete && i.naturalWidth > 0; });
  await page.getByRole('button', { name: 'List view' }).click();
  // The preview shows the picture (a large thumbnail), in an element that runs nothing.
  await row(page, 'logo.png').dblclick();
  const dialog = page.getByRole('dialog', { name: 'logo.png' });
  await dialog.locator('img').waitFor();
  await page.waitForFunction(() => { const i = document.querySelector('.preview img'); return i && i.complete && i.naturalWidth > 0; });
  assert.match(await dialog.locator('img').getAttribute('src'), /\/api\/v1\/files\/thumbnail\?/);
  await page.keyboard.press('Escape');
});
