// The browser tests' harness: starts `cairn serve` (env CAIRN_BIN, default
// ../target/debug/cairn) on a free loopback port with a temporary data directory,
// adds users with `cairn admin user add`, drives the CLI, launches headless Chromium
// (/usr/bin/chromium) through playwright-core, injects axe-core, and stops the
// server by its PID at the end.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const webDir = resolve(here, '..');
export const BIN = resolve(webDir, process.env.CAIRN_BIN || '../target/debug/cairn');
export const ADMIN_PASSWORD = 'admin-password-for-tests';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const shots = join(webDir, 'screenshots');
const axeSource = readFileSync(join(webDir, 'node_modules/axe-core/axe.min.js'), 'utf8');

async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

async function waitFor(url, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {}
    if (Date.now() > end) throw new Error(`the server did not answer ${url} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export class Server {
  /**
   * `{ tls: true }`: the server speaks HTTPS itself, with a self-signed certificate made
   * by `openssl` (`this.ca`, which the CLI is given at login). Node's own requests to it
   * need `NODE_TLS_REJECT_UNAUTHORIZED=0` in the test file, pages `ignoreHTTPSErrors`.
   */
  static async start(opts = {}) {
    const s = new Server();
    await s.#start(opts);
    return s;
  }

  async #start({ tls = false } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'cairn-web-test-'));
    this.dataDir = join(this.dir, 'data');
    this.port = await freePort();
    this.apiUrl = `${tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
    this.log = '';
    const env = { ...process.env, CAIRN_ADMIN_PASSWORD: ADMIN_PASSWORD, RUST_LOG: process.env.RUST_LOG || 'warn' };
    if (tls) {
      this.ca = join(this.dir, 'cert.pem');
      const key = join(this.dir, 'key.pem');
      const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', this.ca, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`openssl could not make a certificate: ${r.stderr || r.error}`);
      Object.assign(env, { CAIRN_TLS_CERT: this.ca, CAIRN_TLS_KEY: key });
    }
    this.proc = spawn(BIN, ['serve', '--data-dir', this.dataDir, '--listen', `127.0.0.1:${this.port}`], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout.on('data', (d) => { this.log += d; });
    this.proc.stderr.on('data', (d) => { this.log += d; });
    this.proc.on('error', (e) => { this.log += `\nspawn failed: ${e.message} (CAIRN_BIN=${BIN})`; });
    await waitFor(`${this.apiUrl}/healthz`).catch((e) => {
      throw new Error(`${e.message}\n${this.log}`);
    });
    this.url = this.apiUrl;
    // A development aid only: a script that stands in front of the server (for
    // example to try the UI before the server's own session API exists).
    if (process.env.CAIRN_WEB_DEV_PROXY) {
      const port = await freePort();
      this.proxy = spawn('node', [process.env.CAIRN_WEB_DEV_PROXY, String(this.port), join(webDir, 'dist'), String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.proxy.stderr.on('data', (d) => { this.log += d; });
      this.url = `http://127.0.0.1:${port}`;
      await waitFor(`${this.url}/healthz`);
    }
  }

  /** Fails with a clear message when the server lacks what a test needs. */
  async require(feature) {
    const checks = {
      'web assets': async () => {
        const r = await fetch(this.url + '/');
        const t = await r.text();
        return r.ok && t.includes('/assets/app-');
      },
      'browser sessions': async () => {
        const r = await fetch(this.url + '/api/v1/auth/session');
        return r.status === 401 || r.status === 200;
      },
      tus: async () => {
        const r = await fetch(this.url + '/api/v1/tus/', { method: 'OPTIONS' });
        return r.headers.get('tus-resumable') === '1.0.0';
      },
      zip: async () => {
        const r = await fetch(this.url + '/api/v1/files/zip?path=/');
        return r.status !== 404 && r.status !== 405;
      },
      thumbnails: async () => {
        const r = await fetch(this.url + '/api/v1/files/thumbnail?path=/x.png&size=256');
        // Unauthenticated: 401 when the endpoint exists, 404 when nothing routes it.
        return r.status !== 404 && r.status !== 405;
      },
      'adding users over the API': async () => {
        const r = await fetch(this.url + '/api/v1/admin/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        return r.status !== 404 && r.status !== 405;
      },
      'app passwords': async () => {
        const r = await fetch(this.url + '/api/v1/account/app-passwords');
        return r.status !== 404 && r.status !== 405;
      },
      search: async () => {
        const r = await fetch(this.url + '/api/v1/files/search?q=x');
        return r.status !== 404 && r.status !== 405;
      },
    };
    let ok;
    try {
      ok = await checks[feature]();
    } catch {
      // A pooled keep-alive connection may have been closed while the test prepared
      // its files; one more try on a fresh one.
      try {
        ok = await checks[feature]();
      } catch (e) {
        throw new Error(`the server cannot be reached (${e.message}); its log:\n${this.log}`);
      }
    }
    if (!ok) {
      throw new Error(`the server at ${BIN} does not offer ${feature} yet (issue 15's server side); this test needs it`);
    }
  }

  run(args, input) {
    const r = spawnSync(BIN, args, { input, encoding: 'utf8', env: { ...process.env, CAIRN_ADMIN_PASSWORD: ADMIN_PASSWORD } });
    if (r.status !== 0) throw new Error(`cairn ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  addUser(name, password, extra = []) {
    this.run(['admin', 'user', 'add', name, '--password-stdin', '--data-dir', this.dataDir, ...extra], password + '\n');
  }

  /** Runs a client command as `user` (logged in once, with its own config dir). */
  cli(user, password, args, input) {
    this.logins = this.logins || {};
    let dir = this.logins[user];
    if (!dir) {
      dir = join(this.dir, 'cli-' + user);
      mkdirSync(dir, { recursive: true });
      const ca = this.ca ? ['--ca', this.ca] : [];
      this.run(['login', this.apiUrl, '--user', user, '--password-stdin', '--config-dir', dir, ...ca], password + '\n');
      this.logins[user] = dir;
    }
    return this.run([...args, '--config-dir', dir], input);
  }

  async stop() {
    if (this.proxy) this.proxy.kill('SIGTERM');
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      await new Promise((r) => { this.proc.once('exit', r); setTimeout(r, 5000); });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], headless: true });
}

/** A page that fails the test on any JavaScript dialog (alert, confirm, prompt). */
export async function newPage(browser, server, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true, ...opts });
  const page = await context.newPage();
  // Content-Security-Policy violations, kept by the page for the tests to read.
  await page.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`));
  });
  page.dialogs = [];
  page.on('dialog', (d) => { page.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.server = server;
  return page;
}

export async function signIn(page, user, password) {
  await page.server.require('web assets');
  await page.goto(page.server.url + '/');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('.signin').waitFor({ state: 'detached' });
  await page.locator('main h1, main [data-testid=empty], main [data-testid=list]').first().waitFor();
}

/** axe-core in the page: returns the serious and critical violations. */
export async function axe(page) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export async function shot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, name + '.png') });
}

/** Drops files on an element through a real DataTransfer drop event. */
export async function dropFiles(page, selector, files) {
  await page.evaluate(async ({ selector, files }) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: f.type || 'application/octet-stream', lastModified: 1700000000000 }));
    }
    const el = document.querySelector(selector);
    for (const type of ['dragenter', 'dragover', 'drop']) {
      el.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    }
  }, { selector, files: files.map((f) => ({ name: f.name, type: f.type, base64: Buffer.from(f.data).toString('base64') })) });
}

/** Drags files and folders from the disk onto an element, as from a file manager:
 * the browser's own drag and drop (CDP Input.dispatchDragEvent), so a folder arrives as
 * a real directory entry. */
export async function dropPaths(page, selector, paths) {
  const box = await page.locator(selector).boundingBox();
  const x = box.x + box.width / 2;
  const y = box.y + box.height / 2;
  const cdp = await page.context().newCDPSession(page);
  const data = { items: [], files: paths, dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop']) await cdp.send('Input.dispatchDragEvent', { type, x, y, data });
  await cdp.detach();
}

export const row = (page, name) => page.locator('[role=row][data-path]').filter({ has: page.locator('.name', { hasText: new RegExp('^' + name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$') }) });

/** The CSP violations the page has seen (none is allowed: no inline script or style). */
export const cspViolations = (page) => page.evaluate(() => window.cspViolations || []);

/**
 * A TCP proxy on loopback in front of `server` that drops one connection mid-request:
 * the `nth` request (from 1) whose bytes start with `marker` (e.g.
 * `PATCH /api/v1/tus/`), on whichever connection it comes, is passed on for `after`
 * bytes, then both sides of its connection are destroyed, as a network cut would. Use
 * `proxy.url` as the server's address; `proxy.cuts` counts the cuts made (at most one).
 */
export async function cuttingProxy(server, marker, nth, after) {
  const target = Number(new URL(server.url).port);
  const sockets = new Set();
  const proxy = { cuts: 0, seen: 0 };
  const listener = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const cut = () => { client.destroy(); upstream.destroy(); };
    for (const s of [client, upstream]) {
      s.on('error', cut);
      s.on('close', cut);
    }
    upstream.pipe(client);
    let tail = ''; // the last bytes seen, too few to hold a whole marker
    let passed = null; // bytes of the marked request passed on before this read
    client.on('data', (chunk) => {
      if (proxy.cuts === 0) {
        const text = tail + chunk.toString('latin1');
        for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + 1)) {
          if (++proxy.seen === nth) passed = tail.length - at;
        }
        tail = text.slice(text.length - (marker.length - 1));
        if (passed !== null) {
          if (passed + chunk.length >= after) {
            proxy.cuts++;
            upstream.write(chunk.subarray(0, after - passed), cut);
            return;
          }
          passed += chunk.length;
        }
      }
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
  });
  await new Promise((ok) => listener.listen(0, '127.0.0.1', ok));
  proxy.url = `http://127.0.0.1:${listener.address().port}`;
  proxy.close = () => new Promise((ok) => {
    for (const s of sockets) s.destroy();
    listener.close(ok);
  });
  return proxy;
}
