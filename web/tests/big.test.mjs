// A folder of 10,000 files: listed (every page followed), scrollable to the end, with
// only the visible rows in the page. The time is printed; the benchmark
// (bench/list.mjs) is what records it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row } from './harness.mjs';

let server, browser;
const PW = 'gina-password-1';
export const N = 10000;
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('gina', PW);
  const dir = join(server.dir, 'big');
  mkdirSync(dir);
  for (let i = 0; i < N; i++) writeFileSync(join(dir, `file-${String(i).padStart(5, '0')}.txt`), String(i));
  server.cli('gina', PW, ['put', '-r', dir, '/big']);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a folder of 10,000 files is listed and scrolls to its end, virtualized', async () => {
  await server.require('browser sessions');
  const page = await newPage(browser, server);
  await signIn(page, 'gina', PW);
  await row(page, 'big').waitFor();
  const t0 = Date.now();
  await page.goto(server.url + '/#/files/big');
  await row(page, 'file-00000.txt').waitFor();
  const listed = Date.now() - t0;
  await page.getByTestId('list').focus();
  await page.keyboard.press('End');
  await row(page, `file-${String(N - 1).padStart(5, '0')}.txt`).waitFor();
  const total = Date.now() - t0;
  const rows = await page.locator('[role=row][data-path]').count();
  console.log(`10,000 files: listed in ${listed} ms, scrolled to the end in ${total} ms; ${rows} rows in the DOM`);
  assert.ok(rows < 120, `only the visible rows are rendered (${rows})`);
  assert.equal(await page.getByTestId('list').getAttribute('aria-activedescendant'), `row-${N - 1}`);
  await page.context().close();
});
