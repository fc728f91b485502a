// The one door to the server: every request goes through `api`, which adds the CSRF
// header to state-changing requests and, on a 401, asks for a sign-in (without
// unmounting anything) and then retries the same request.
import { store } from './store.js';

const BASE = '/api/v1';
let csrf = '';
let waiting = []; // resolvers of requests parked until the user signs in again

export function setSession(session) {
  const before = store.get().user;
  if (session && before && before.id !== session.user.id) {
    // Someone else signed in over an expired session: nothing of the first account's
    // may stay on screen or be retried in the second's name.
    location.reload();
    return;
  }
  csrf = session ? session.csrf_token : '';
  store.set({ user: session ? session.user : null, needAuth: !session });
  if (session) {
    const w = waiting;
    waiting = [];
    w.forEach((resolve) => resolve());
  }
}

export const csrfToken = () => csrf;

/** Resolves once a signed-in session exists again (asks for it when there is none). */
export function whenSignedIn() {
  store.set({ needAuth: true });
  return new Promise((resolve) => waiting.push(resolve));
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export async function api(method, path, body, opts = {}) {
  for (;;) {
    const headers = {};
    if (method !== 'GET' && method !== 'HEAD') headers['X-Cairn-CSRF'] = csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(BASE + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        signal: opts.signal,
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', 'The server cannot be reached. Check the connection and try again.');
    }
    if (res.status === 401 && !opts.noAuthRetry) {
      await whenSignedIn();
      continue;
    }
    if (!res.ok) {
      let err = {};
      try {
        const j = await res.json();
        err = j.error || j;
      } catch {}
      throw new ApiError(res.status, err.code, err.message, err);
    }
    if (res.status === 204 || opts.raw) return opts.raw ? res : null;
    const type = res.headers.get('content-type') || '';
    return type.includes('json') ? res.json() : res.text();
  }
}

export const get = (path, params, opts) => api('GET', path + query(params), undefined, opts);
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts);

export function query(params) {
  if (!params) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

export const contentUrl = (path, extra) => BASE + '/files/content' + query({ path, ...extra });
export const thumbUrl = (path, size = 256) => BASE + '/files/thumbnail' + query({ path, size });
export const zipUrl = (paths) => BASE + '/files/zip' + query({ path: paths });

/** Every entry of a folder, following the pages at the largest page size;
 * `onPage(entriesSoFar)` is called after each page but the last, so a view can show
 * the first 10,000 while the rest arrive. */
export async function listAll(path, signal, onPage) {
  let entries = [];
  let after;
  for (;;) {
    const page = await get('/files/list', { path, limit: 10000, after }, { signal });
    entries = entries.concat(page.entries);
    if (!page.cursor) return entries;
    if (onPage) onPage(entries);
    after = page.cursor;
  }
}

export async function signIn(username, password) {
  const s = await api('POST', '/auth/session', { username, password }, { noAuthRetry: true });
  setSession(s);
  return s;
}

export async function signOut() {
  try {
    await api('DELETE', '/auth/session', undefined, { noAuthRetry: true });
  } catch {}
  csrf = '';
  store.set({ user: null, needAuth: true });
}

export async function loadSession() {
  try {
    const s = await api('GET', '/auth/session', undefined, { noAuthRetry: true });
    setSession(s);
  } catch (e) {
    store.set({ user: null, needAuth: true, bootError: e.status === 401 ? '' : e.message });
  }
}
