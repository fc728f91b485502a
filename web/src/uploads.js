// Uploads over tus 1.0 (tus-js-client): many files at once, per-file and total
// progress, speed, cancel, resume (also after a reload: the upload URL is kept in
// localStorage under a fingerprint of the file and its destination, so adding the same
// file to the same folder again continues where it stopped), and a question when a
// name is taken: keep both, replace or skip.
//
// A browser sends one request body at a time far slower than the server takes it, so a
// large file goes as parts sent at once (tus concatenation), joined by the server. The
// uploads use at most SLOTS connections together, leaving the browser's other
// connections to this server (six in all) free for the rest of the page.
import { Upload } from 'tus-js-client';
import { csrfToken, whenSignedIn, post } from './api.js';
import { store } from './store.js';
import { join, parent } from './util.js';

const SLOTS = 4;
let nextId = 0;
let items = [];
let busy = 0; // connections in use by uploads
let rendering = false;
let conflictRule = null; // 'rename' | 'replace' | 'skip' chosen with "for all"
const madeFolders = new Set();
const doneListeners = new Set();

export const onUploaded = (fn) => (doneListeners.add(fn), () => doneListeners.delete(fn));

function publish() {
  if (rendering) return;
  rendering = true;
  requestAnimationFrame(() => {
    rendering = false;
    store.set({ uploads: items.map((i) => ({ ...i, upload: undefined, file: undefined })) });
  });
}

// Progress is shown a few times a second: rendering it on every event would take CPU
// from the upload itself.
const PROGRESS_EVERY_MS = 250;
let progressTimer = null;
function publishProgress() {
  if (progressTimer) return;
  progressTimer = setTimeout(() => {
    progressTimer = null;
    publish();
  }, PROGRESS_EVERY_MS);
}

/** Queues files: [{file, rel}] where rel is the path below `folder` ("a/b.txt"). */
export function enqueue(folder, files) {
  conflictRule = null;
  for (const { file, rel } of files) {
    const relPath = rel || file.name;
    const dest = join(folder, relPath);
    items.push({ id: ++nextId, file, name: relPath, dest, base: folder, size: file.size, sent: 0, status: 'queued', speed: 0, error: '' });
  }
  publish();
  pump();
}

export function cancel(id) {
  const it = items.find((i) => i.id === id);
  if (!it) return;
  if (it.upload) it.upload.abort(true).catch(() => {});
  if (it.status === 'queued' || it.status === 'uploading') {
    if (it.status === 'uploading') it.release();
    it.status = 'canceled';
  }
  publish();
  pump();
}

export function cancelAll() {
  items.filter((i) => i.status === 'queued' || i.status === 'uploading').forEach((i) => cancel(i.id));
}

export function clearFinished() {
  items = items.filter((i) => i.status === 'queued' || i.status === 'uploading');
  publish();
}

/** How many uploads a previous page left unfinished (their files must be added again). */
export function interruptedCount() {
  let n = 0;
  try {
    for (let i = 0; i < localStorage.length; i++) if (localStorage.key(i).startsWith('tus::cairn:')) n++;
  } catch {}
  return n;
}

/** From which size a file is sent as parts, and in how many (localStorage can change
 * both, for tests and benchmarks). */
function partsFrom() {
  const n = Number(localStorage.getItem('cairn.tusPartsFrom'));
  return n > 0 ? n : 64 * 1024 * 1024;
}
function partCount() {
  const n = Number(localStorage.getItem('cairn.tusParts'));
  return n > 0 ? Math.min(n, SLOTS) : 3;
}

function pump() {
  for (;;) {
    const it = items.find((i) => i.status === 'queued');
    if (!it) break;
    const parts = it.size >= partsFrom() ? partCount() : 1;
    if (busy > 0 && busy + parts > SLOTS) break;
    busy += parts;
    it.parts = parts;
    it.status = 'uploading';
    // Once, whichever comes first: the upload's end, or its cancel (after which an
    // aborted upload may never end).
    let held = true;
    it.release = () => {
      if (held) busy -= parts;
      held = false;
    };
    start(it, 'fail').finally(() => {
      it.release();
      publish();
      pump();
    });
  }
  publish();
}

/** Makes `dir` and its parents below `base` (the folder the upload was dropped in). */
async function ensureFolder(dir, base) {
  if (dir === base || dir === '/' || madeFolders.has(dir)) return;
  await ensureFolder(parent(dir), base);
  try {
    await post('/files/mkdir', { path: dir });
  } catch (e) {
    if (e.status !== 409) throw e;
  }
  madeFolders.add(dir);
}

// One PATCH per file (or part), unless `cairn.tusChunkSize` says otherwise: the server
// keeps what arrived when a request is cut and saves its progress as the bytes come, so
// smaller requests would buy no safety, and each costs a round trip and a save.
function chunkSize() {
  const n = Number(localStorage.getItem('cairn.tusChunkSize'));
  return n > 0 ? n : Infinity;
}

/** The server's error in a failed tus request's response, if it sent one. */
function apiError(err) {
  try {
    return JSON.parse(err.originalResponse.getBody()).error;
  } catch {
    return null;
  }
}
const errorCode = (err) => apiError(err)?.code;

function start(it, onconflict) {
  return new Promise((resolve) => {
    const run = async () => {
      try {
        await ensureFolder(parent(it.dest), it.base);
      } catch (e) {
        it.status = 'error';
        it.error = e.message;
        return resolve();
      }
      if (it.status === 'canceled') return resolve();
      let last = { t: performance.now(), b: it.sent };
      const dest = { folder: parent(it.dest), filename: it.dest.slice(it.dest.lastIndexOf('/') + 1) };
      const up = new Upload(it.file, {
        endpoint: '/api/v1/tus/',
        chunkSize: chunkSize(),
        // Parts name the destination too, so the server checks the rights and the
        // quota before their first byte.
        ...(it.parts > 1 ? { parallelUploads: it.parts, metadataForPartialUploads: dest } : {}),
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        fingerprint: async (file) => `cairn:${it.dest}:${file.size}:${file.lastModified}:${file.type}`,
        metadata: {
          ...dest,
          filetype: it.file.type || 'application/octet-stream',
          onconflict,
          mtime: String(it.file.lastModified || Date.now()),
        },
        onBeforeRequest(req) {
          req.setHeader('X-Cairn-CSRF', csrfToken());
        },
        onAfterResponse(req, res) {
          const p = res.getHeader('Cairn-Path');
          if (p) {
            try { it.dest = decodeURIComponent(p); } catch {}
          }
        },
        onShouldRetry(err) {
          const s = err.originalResponse ? err.originalResponse.getStatus() : 0;
          // An offset mismatch follows a cut: the browser may replay a request whose
          // bytes the server already kept in part; asking the offset again resumes.
          return s === 0 || s === 423 || s >= 500 || errorCode(err) === 'offset_mismatch';
        },
        onProgress(sent, total) {
          const now = performance.now();
          if (now - last.t > 500) {
            it.speed = ((sent - last.b) * 1000) / (now - last.t);
            last = { t: now, b: sent };
          }
          it.sent = sent;
          it.size = total;
          publishProgress();
        },
        onSuccess() {
          it.status = 'done';
          it.sent = it.size;
          it.speed = 0;
          doneListeners.forEach((l) => l(it.dest));
          resolve();
        },
        async onError(err) {
          if (it.status === 'canceled') return resolve();
          const s = err.originalResponse ? err.originalResponse.getStatus() : 0;
          if (s === 401) {
            await whenSignedIn();
            return run();
          }
          if (errorCode(err) === 'already_exists' && onconflict === 'fail') {
            const choice = conflictRule || (await askConflict(it));
            if (choice === 'skip') {
              it.status = 'skipped';
              return resolve();
            }
            onconflict = choice;
            return run();
          }
          it.status = 'error';
          it.error = apiError(err)?.message || (s ? `HTTP ${s}` : 'The connection was lost.');
          resolve();
        },
      });
      it.upload = up;
      try {
        const previous = await up.findPreviousUploads();
        if (previous.length) up.resumeFromPreviousUpload(previous[0]);
      } catch {}
      up.start();
    };
    run();
  });
}

// One question at a time: the conflict dialog reads `store.conflict`.
let asking = Promise.resolve();
function askConflict(it) {
  const ask = asking.then(() => conflictRule || new Promise((resolve) => {
    store.set({
      conflict: {
        name: it.dest,
        answer(choice, forAll) {
          if (forAll) conflictRule = choice;
          store.set({ conflict: null });
          resolve(choice);
        },
      },
    });
  }));
  asking = ask.catch(() => {});
  return ask;
}

/** Files from a drop: folders are walked (webkitGetAsEntry) so their layout is kept. */
export async function filesFromDrop(dt) {
  const out = [];
  const entries = [];
  for (const item of dt.items || []) {
    if (item.kind !== 'file') continue;
    const entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
    if (entry) entries.push(entry);
    else {
      const f = item.getAsFile();
      if (f) out.push({ file: f, rel: f.webkitRelativePath || f.name });
    }
  }
  if (!entries.length && !out.length) for (const f of dt.files || []) out.push({ file: f, rel: f.webkitRelativePath || f.name });
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, rel: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, prefix + entry.name + '/');
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return out;
}

export const filesFromInput = (input) =>
  [...input.files].map((f) => ({ file: f, rel: f.webkitRelativePath || f.name }));

/** Forgets the unfinished uploads of earlier pages (their partial uploads expire on the server). */
export function forgetInterrupted() {
  try {
    const keys = [];
    for (let i = 0; i < localStorage.length; i++) if (localStorage.key(i).startsWith('tus::cairn:')) keys.push(localStorage.key(i));
    keys.forEach((k) => localStorage.removeItem(k));
  } catch {}
}
