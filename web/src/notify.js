// Live updates: one WebSocket to /api/v1/notify/ws while signed in. Each "advanced"
// message makes us read /delta from our cursor and tell the listeners which paths
// changed. Reconnects with backoff; when nothing changes, nothing is sent but the
// server's heartbeat.
import { get } from './api.js';

let ws = null;
let cursor = null;
let backoff = 500;
let timer = null;
let wanted = false;
let reading = false;
let again = false;
const listeners = new Set();

export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function startNotify() {
  wanted = true;
  if (ws) return;
  // Signed in again after a pause: connect now rather than when the backoff ends.
  clearTimeout(timer);
  backoff = 500;
  connect();
}

export function stopNotify() {
  wanted = false;
  clearTimeout(timer);
  if (ws) ws.close();
  ws = null;
}

function connect() {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/notify/ws';
  let sock;
  try {
    sock = new WebSocket(url, ['cairn.notify.v1']);
  } catch {
    return retry();
  }
  ws = sock;
  sock.onopen = () => { backoff = 500; };
  sock.onmessage = (ev) => {
    let n;
    try { n = JSON.parse(ev.data); } catch { return; }
    if (n.type === 'head') {
      // A head's cursor covers its namespace only; the account's whole position
      // (home and every shared folder) comes from /delta/latest.
      if (!cursor) startCursor();
      else readDelta(); // we may have missed something while disconnected
    } else if (n.type === 'advanced') {
      readDelta();
    }
  };
  sock.onclose = () => {
    if (ws === sock) ws = null;
    if (wanted) retry();
  };
}

let starting = null;
function startCursor() {
  if (starting) return;
  starting = get('/delta/latest').then((r) => { if (!cursor) cursor = r.cursor; }, () => {}).finally(() => { starting = null; });
}

function retry() {
  clearTimeout(timer);
  timer = setTimeout(() => { if (wanted && !ws) connect(); }, backoff);
  backoff = Math.min(backoff * 2, 30000);
}

async function readDelta() {
  if (reading) { again = true; return; }
  reading = true;
  try {
    const paths = new Set();
    let all = false;
    if (!cursor) all = true;
    else {
      for (;;) {
        const d = await get('/delta', { cursor });
        for (const c of d.changes) {
          paths.add(c.path);
          if (c.from_path) paths.add(c.from_path);
        }
        cursor = d.cursor;
        if (!d.has_more) break;
      }
    }
    listeners.forEach((l) => l({ paths, all }));
  } catch (e) {
    // A cursor the server cannot continue (or any other failure): start again from
    // the head and let every view refresh.
    cursor = null;
    try { cursor = (await get('/delta/latest')).cursor; } catch {}
    listeners.forEach((l) => l({ paths: new Set(), all: true }));
  } finally {
    reading = false;
    if (again) { again = false; readDelta(); }
  }
}

/** Tells the views that this page changed something (they refresh at once, without
 * waiting for the server's notification). */
export function localChange() {
  listeners.forEach((l) => l({ paths: new Set(), all: true }));
}
