// The web interface's benchmark, in one run (`node bench/web.mjs` in web/, after a
// build of the server): time until a folder of 10,000 files is listed and scrollable,
// the shipped JS + CSS compressed, a change by the CLI appearing in an open page, and
// (when the server speaks tus) a large file uploaded through the browser against
// `cairn put` of a file of the same size. Env BENCH_UPLOAD_MB (default 1024) sizes the files,
// BENCH_CHUNK_MB the size of each PATCH (default: the app's own); BENCH_PIN=1 runs the
// uploaders on CPU 0 and the server on CPU 1 (Linux `taskset`).
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Server, launch, newPage, signIn, row, webDir } from '../tests/harness.mjs';

const results = [];
// CPU seconds (user + system) from /proc: a process's own, its waited-for children's
// (the CLI runs under spawnSync), and Chromium's processes together.
const ticks = (stat, i) => Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[i]) / 100;
const cpuOf = (pid) => { const st = readFileSync(`/proc/${pid}/stat`, 'utf8'); return ticks(st, 11) + ticks(st, 12); };
const childrenCpu = () => { const st = readFileSync('/proc/self/stat', 'utf8'); return ticks(st, 13) + ticks(st, 14); };
const chromiumCpu = () => {
  let sum = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('chromium')) sum += cpuOf(p);
    } catch {}
  }
  return sum;
};
const record = (what, value, target) => { results.push({ what, value, target }); console.log(`${what}: ${value} (target ${target})`); };

const assets = join(webDir, 'dist/assets');
let gz = 0;
for (const f of readdirSync(assets)) if (/\.(js|css)$/.test(f)) gz += gzipSync(readFileSync(join(assets, f)), { level: 9 }).length;
record('shipped JS + CSS, gzip', `${(gz / 1024).toFixed(1)} KiB`, '<= 150 KiB');

// BENCH_PIN=1: the uploaders (this process's children: Chromium, the CLI) on CPU 0 and
// the server on CPU 1, as if each had a machine of its own.
const pin = (pid, cpu) => spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
if (process.env.BENCH_PIN) pin(process.pid, 0);
const server = await Server.start();
if (process.env.BENCH_PIN) pin(server.proc.pid, 1);
const browser = await launch();
try {
  await server.require('browser sessions');
  const PW = 'bench-password-1';
  server.addUser('bench', PW);
  const dir = join(server.dir, 'big');
  mkdirSync(dir);
  for (let i = 0; i < 10000; i++) writeFileSync(join(dir, `file-${String(i).padStart(5, '0')}.txt`), String(i));
  server.cli('bench', PW, ['put', '-r', dir, '/big']);
  const page = await newPage(browser, server);
  await signIn(page, 'bench', PW);
  await row(page, 'big').waitFor();
  const runs = [];
  for (let k = 0; k < 3; k++) {
    await page.goto(server.url + '/#/files/');
    await row(page, 'big').waitFor();
    const t0 = Date.now();
    await page.goto(server.url + '/#/files/big');
    await row(page, 'file-00000.txt').waitFor();
    await page.getByTestId('list').focus();
    await page.keyboard.press('End');
    await row(page, 'file-09999.txt').waitFor();
    runs.push(Date.now() - t0);
  }
  runs.sort((a, b) => a - b);
  record('10,000 files listed and scrolled to the end (median of 3)', `${runs[1]} ms`, '<= 1000 ms');

  await page.goto(server.url + '/#/files/');
  await row(page, 'big').waitFor();
  await page.waitForTimeout(500);
  const lat = [];
  for (let k = 0; k < 5; k++) {
    const local = join(server.dir, `live-${k}`);
    writeFileSync(local, 'x');
    const t0 = Date.now();
    server.cli('bench', PW, ['put', local, `/live-${k}.txt`]);
    const putDone = Date.now();
    await row(page, `live-${k}.txt`).waitFor();
    lat.push(Date.now() - putDone);
    void t0;
  }
  lat.sort((a, b) => a - b);
  record('a CLI change shown in the open page, after the CLI returned (median of 5)', `${lat[2]} ms`, '<= 500 ms');

  try {
    await server.require('tus');
    const mb = Number(process.env.BENCH_UPLOAD_MB || 1024);
    // Every file of different random bytes: an upload must not find another's blocks
    // already stored (deduplicated).
    const randomFile = (name) => {
      const path = join(server.dir, name);
      const fd = openSync(path, 'w');
      for (let i = 0; i < mb; i++) writeSync(fd, randomBytes(1 << 20));
      closeSync(fd);
      return path;
    };
    const gib = mb / 1024;
    if (process.env.BENCH_CHUNK_MB) await page.evaluate((n) => localStorage.setItem('cairn.tusChunkSize', String(n * 1024 * 1024)), Number(process.env.BENCH_CHUNK_MB));
    // Rounds alternating the two, since a single run on a shared machine varies by a
    // fifth; the medians are recorded.
    const rounds = Number(process.env.BENCH_ROUNDS || 3);
    const put = { ms: [], client: [], server: [] };
    const tus = { ms: [], client: [], server: [] };
    const timed = async (into, clientCpu, run) => {
      const [server0, client0] = [cpuOf(server.proc.pid), clientCpu()];
      const t0 = Date.now();
      await run();
      into.ms.push(Date.now() - t0);
      into.client.push((clientCpu() - client0) / gib);
      into.server.push((cpuOf(server.proc.pid) - server0) / gib);
    };
    for (let k = 0; k < rounds; k++) {
      const putFile = randomFile(`put-${k}.bin`);
      await timed(put, childrenCpu, () => server.cli('bench', PW, ['put', putFile, `/put-${k}.bin`]));
      rmSync(putFile);
      const file = randomFile(`upload-${k}.bin`);
      await timed(tus, chromiumCpu, async () => {
        await page.getByTestId('file-input').setInputFiles(file);
        await row(page, `upload-${k}.bin`).waitFor({ timeout: 30 * 60 * 1000 });
      });
      rmSync(file);
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const [putMs, tusMs] = [median(put.ms), median(tus.ms)];
    const rate = (ms) => (mb / (ms / 1000)).toFixed(0);
    record(`${mb} MiB through the browser (tus) vs cairn put, median of ${rounds}`, `${rate(tusMs)} MiB/s vs ${rate(putMs)} MiB/s = ${Math.round((putMs / tusMs) * 100)}% (each round: tus ${tus.ms.map(rate).join(', ')}; put ${put.ms.map(rate).join(', ')})`, '>= 70%');
    const cpu = (x) => `${median(x.client).toFixed(1)}, server ${median(x.server).toFixed(1)}`;
    record('CPU seconds per GiB uploaded, tus (median)', `Chromium ${cpu(tus)}`, 'for reading the figure above');
    record('CPU seconds per GiB uploaded, cairn put (median)', `client ${cpu(put)}`, 'for reading the figure above');
  } catch (e) {
    record('upload through the browser (tus)', `not measured: ${e.message}`, '>= 70% of cairn put');
  }
} finally {
  await browser.close();
  await server.stop();
}
console.log('\n| what | result | target |\n| --- | --- | --- |');
for (const r of results) console.log(`| ${r.what} | ${r.value} | ${r.target} |`);
