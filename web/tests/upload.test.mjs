// Uploads over tus: three files dropped with a real DataTransfer drop event and a
// folder through the folder picker, progress shown; an upload cut mid-file that
// resumes and completes bit-identical.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row, dropFiles, dropPaths, axe, shot, cuttingProxy } from './harness.mjs';

let server, browser;
const PW = 'dave-password-1';
before(async () => {
  server = await Server.start();
  browser = await launch();
  server.addUser('dave', PW);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const get = (remote) => {
  const local = join(server.dir, 'get-' + Math.random().toString(36).slice(2));
  server.cli('dave', PW, ['get', remote, local]);
  return readFileSync(local);
};

test('drop three files and a folder (and pick a folder), with progress', async () => {
  await server.require('browser sessions');
  await server.require('tus');
  const page = await newPage(browser, server);
  await signIn(page, 'dave', PW);
  await page.getByTestId('empty').waitFor();
  const files = [
    { name: 'one.txt', data: Buffer.from('one\n') },
    { name: 'two.bin', data: randomBytes(300 * 1024) },
    { name: 'three.md', data: Buffer.from('# three\n') },
  ];
  await dropFiles(page, 'section.files', files);
  await page.getByTestId('uploads').waitFor();
  await page.getByTestId('total-progress').waitFor();
  for (const f of files) await row(page, f.name).waitFor();
  await page.getByText('3 of 3 uploaded').waitFor();
  assert.deepEqual(await axe(page), [], 'the uploads panel');
  // The sidebar's storage figure is read again after the uploads' changes arrive.
  await page.getByText(/KB used/).waitFor();
  await shot(page, 'uploads-desktop');
  // At phone width the panel's header still fits on one line.
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'uploads-phone');
  await page.setViewportSize({ width: 1280, height: 800 });
  for (const f of files) assert.ok(get('/' + f.name).equals(f.data), `${f.name} arrived intact`);

  const dir = join(server.dir, 'Album');
  mkdirSync(join(dir, 'inner'), { recursive: true });
  writeFileSync(join(dir, 'a.txt'), 'a');
  writeFileSync(join(dir, 'inner', 'b.txt'), 'b');
  // A folder dragged from the disk, with a folder inside it.
  await dropPaths(page, 'section.files', [dir]);
  await row(page, 'Album').waitFor();
  await page.getByText('5 of 5 uploaded').waitFor();
  assert.equal(get('/Album/a.txt').toString(), 'a');
  assert.equal(get('/Album/inner/b.txt').toString(), 'b');
  // And a folder through the folder picker.
  const dir2 = join(server.dir, 'Picked');
  mkdirSync(dir2);
  writeFileSync(join(dir2, 'c.txt'), 'c');
  await page.getByTestId('folder-input').setInputFiles(dir2);
  await row(page, 'Picked').waitFor();
  await page.getByText('6 of 6 uploaded').waitFor();
  assert.equal(get('/Picked/c.txt').toString(), 'c');
  assert.deepEqual(page.dialogs, []);
  await page.context().close();
});

test('an upload cut mid-file resumes and completes bit-identical', async () => {
  await server.require('browser sessions');
  await server.require('tus');
  // The page talks to the server through a proxy that drops the connection in the
  // middle of the second PATCH request's body.
  const CHUNK = 4 * 1024 * 1024;
  const proxy = await cuttingProxy(server, 'PATCH /api/v1/tus/', 2, CHUNK / 3);
  const page = await newPage(browser, server);
  page.server = { url: proxy.url, require: (what) => server.require(what) };
  await signIn(page, 'dave', PW);
  await page.evaluate((n) => localStorage.setItem('cairn.tusChunkSize', String(n)), CHUNK);
  const offsets = [];
  page.on('request', (r) => {
    if (r.method() === 'PATCH') offsets.push(Number(r.headers()['upload-offset']));
  });
  const data = randomBytes(3 * CHUNK + 123);
  const local = join(server.dir, 'big.bin');
  writeFileSync(local, data);
  await page.getByTestId('file-input').setInputFiles(local);
  await row(page, 'big.bin').waitFor({ timeout: 30000 });
  assert.equal(proxy.cuts, 1, 'the connection was cut once');
  // What came before the cut was kept: the next PATCH starts where the bytes stopped,
  // inside the cut request's range, not at its beginning.
  const resumed = offsets.find((o) => o % CHUNK !== 0);
  assert.ok(resumed > CHUNK && resumed < 2 * CHUNK, `resumed mid-request (PATCH offsets ${offsets})`);
  assert.ok(get('/big.bin').equals(data), 'the file is bit-identical');
  await page.context().close();
  await proxy.close();
});

test('a large file goes up as parts in parallel and arrives bit-identical', async () => {
  await server.require('tus');
  const page = await newPage(browser, server);
  await signIn(page, 'dave', PW);
  // Parts from 1 MiB on, so a small file is enough.
  await page.evaluate(() => {
    localStorage.setItem('cairn.tusPartsFrom', String(1024 * 1024));
    localStorage.setItem('cairn.tusParts', '3');
  });
  const concat = [];
  page.on('request', (r) => {
    const c = r.headers()['upload-concat'];
    if (r.method() === 'POST' && c) concat.push(c.split(';')[0]);
  });
  const data = randomBytes(5 * 1024 * 1024 + 7);
  const local = join(server.dir, 'parts.bin');
  writeFileSync(local, data);
  await page.getByTestId('file-input').setInputFiles(local);
  await row(page, 'parts.bin').waitFor({ timeout: 30000 });
  assert.deepEqual(concat, ['partial', 'partial', 'partial', 'final'], 'three parts, then the final upload');
  assert.ok(get('/parts.bin').equals(data), 'the file is bit-identical');
  await page.context().close();
});

test('a name that is taken asks: keep both, replace or skip', async () => {
  await server.require('browser sessions');
  await server.require('tus');
  const page = await newPage(browser, server);
  await signIn(page, 'dave', PW);
  await row(page, 'one.txt').waitFor();
  await dropFiles(page, 'section.files', [{ name: 'one.txt', data: Buffer.from('one again\n') }]);
  const dialog = page.getByRole('dialog', { name: 'A file with this name exists' });
  await dialog.getByRole('button', { name: 'Keep both' }).click();
  await row(page, 'one (1).txt').waitFor();
  assert.equal(get('/one.txt').toString(), 'one\n');
  await dropFiles(page, 'section.files', [{ name: 'one.txt', data: Buffer.from('replaced\n') }]);
  await dialog.getByRole('button', { name: 'Replace' }).click();
  await page.getByText('2 of 2 uploaded').waitFor();
  assert.equal(get('/one.txt').toString(), 'replaced\n');
  await page.context().close();
});

test('an upload resumes after a reload of the page, where it stopped', async () => {
  await server.require('browser sessions');
  await server.require('tus');
  const page = await newPage(browser, server);
  await signIn(page, 'dave', PW);
  await page.evaluate(() => localStorage.setItem('cairn.tusChunkSize', String(1024 * 1024)));
  const data = randomBytes(4 * 1024 * 1024 + 77);
  const local = join(server.dir, 'reload.bin');
  writeFileSync(local, data);
  let patches = 0;
  let held = null;
  let heldSeen;
  const seen = new Promise((r) => { heldSeen = r; });
  const offsets = [];
  await page.route('**/api/v1/tus/**', async (route) => {
    const req = route.request();
    if (req.method() === 'PATCH') {
      offsets.push(Number(req.headers()['upload-offset']));
      if (++patches === 3 && !held) {
        held = route; // never answered: the page is reloaded while it hangs
        heldSeen();
        return;
      }
    }
    return route.continue();
  });
  await page.getByTestId('file-input').setInputFiles(local);
  await seen;
  await page.reload();
  held.abort().catch(() => {});
  await page.getByText(/upload was interrupted/).waitFor();
  offsets.length = 0;
  await page.getByTestId('file-input').setInputFiles(local);
  await row(page, 'reload.bin').waitFor({ timeout: 30000 });
  assert.ok(offsets[0] >= 2 * 1024 * 1024, `after the reload the upload went on from ${offsets[0]}, not from 0`);
  assert.ok(get('/reload.bin').equals(data), 'the file is bit-identical');
  await page.context().close();
});

test('an upload can be cancelled, and nothing is left of it', async () => {
  await server.require('browser sessions');
  await server.require('tus');
  const page = await newPage(browser, server);
  await signIn(page, 'dave', PW);
  await page.evaluate(() => localStorage.setItem('cairn.tusChunkSize', String(256 * 1024)));
  const local = join(server.dir, 'cancel.bin');
  writeFileSync(local, randomBytes(4 * 1024 * 1024));
  // Slow the PATCH requests down so there is time to cancel.
  await page.route('**/api/v1/tus/**', async (route) => {
    if (route.request().method() === 'PATCH') await new Promise((r) => setTimeout(r, 400));
    return route.continue().catch(() => {});
  });
  await page.getByTestId('file-input').setInputFiles(local);
  await page.getByRole('button', { name: 'Cancel cancel.bin' }).click();
  await page.locator('[data-testid=uploads] li[data-status=canceled]').waitFor();
  await page.waitForTimeout(1000);
  const listing = JSON.parse(server.cli('dave', PW, ['ls', '/', '--json']));
  const names = (Array.isArray(listing) ? listing : listing.entries).map((e) => e.name);
  assert.ok(!names.includes('cancel.bin'), 'the cancelled file is not there');
  await page.context().close();
});
