// The dialogs: name prompt, folder picker (move/copy), versions, share, link, preview,
// upload conflict, and the sign-in overlay.
import { useEffect, useRef, useState } from 'preact/hooks';
import { Dialog, Icon } from './ui.jsx';
import { get, post, listAll, contentUrl, thumbUrl, signIn, api } from './api.js';
import { toast, toastError, useStore } from './store.js';
import { base, date, fileType, join, parent, segments, size } from './util.js';

export function PromptDialog({ title, label, initial = '', action, onSubmit, onClose, selectStem }) {
  const [value, setValue] = useState(initial);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const input = useRef();
  useEffect(() => {
    const el = input.current;
    if (el && selectStem) {
      const dot = initial.lastIndexOf('.');
      el.setSelectionRange(0, dot > 0 ? dot : initial.length);
    } else if (el) el.select();
  }, []);
  const submit = async (e) => {
    e.preventDefault();
    const v = value.trim();
    if (!v) return setError('Enter a name.');
    if (v.includes('/')) return setError('A name cannot contain “/”.');
    setBusy(true);
    try {
      await onSubmit(v);
      onClose();
    } catch (err) {
      setError(err.message);
      setBusy(false);
    }
  };
  return (
    <Dialog title={title} onClose={onClose}>
      <form onSubmit={submit}>
        <label class="field">
          <span>{label}</span>
          <input ref={input} autofocus value={value} onInput={(e) => setValue(e.currentTarget.value)} aria-invalid={error ? 'true' : undefined} />
        </label>
        {error && <p class="error" role="alert">{error}</p>}
        <div class="dialog-actions">
          <button type="button" onClick={onClose}>Cancel</button>
          <button class="primary" type="submit" disabled={busy}>{action}</button>
        </div>
      </form>
    </Dialog>
  );
}

export function ConfirmDialog({ title, text, action, onConfirm, onClose, danger }) {
  return (
    <Dialog title={title} onClose={onClose}>
      <p>{text}</p>
      <div class="dialog-actions">
        <button type="button" onClick={onClose}>Cancel</button>
        <button class={danger ? 'danger' : 'primary'} type="button" autofocus onClick={async () => { onClose(); await onConfirm(); }}>{action}</button>
      </div>
    </Dialog>
  );
}

/** Choose a destination folder (for move and copy). */
export function FolderPicker({ title, action, start, onPick, onClose, exclude = [] }) {
  const [path, setPath] = useState(start);
  const [folders, setFolders] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    let live = true;
    setFolders(null);
    listAll(path).then((es) => live && setFolders(es.filter((e) => e.kind === 'folder')), (e) => live && (toastError(e), setFolders([])));
    return () => { live = false; };
  }, [path]);
  const bad = exclude.some((x) => path === x || path.startsWith(x + '/'));
  return (
    <Dialog title={title} onClose={onClose}>
      <nav class="picker-crumbs" aria-label="Destination">
        <button type="button" class="link" onClick={() => setPath('/')}>My files</button>
        {segments(path).map((s, i, a) => (
          <span key={i}> / <button type="button" class="link" onClick={() => setPath('/' + a.slice(0, i + 1).join('/'))}>{s}</button></span>
        ))}
      </nav>
      <ul class="picker" aria-label="Folders">
        {path !== '/' && <li><button type="button" onClick={() => setPath(parent(path))}><Icon name="up" /> Up</button></li>}
        {folders === null && <li class="muted">Loading…</li>}
        {folders && folders.length === 0 && <li class="muted">No folders here.</li>}
        {folders && folders.map((f) => (
          <li key={f.path}><button type="button" onClick={() => setPath(f.path)}><Icon name={fileType(f)} /> <span>{f.name}</span></button></li>
        ))}
      </ul>
      <div class="dialog-actions">
        <button type="button" onClick={onClose}>Cancel</button>
        <button class="primary" type="button" disabled={bad || busy} onClick={async () => { setBusy(true); await onPick(path); onClose(); }}>{action}</button>
      </div>
    </Dialog>
  );
}

export function VersionsDialog({ entry, onClose, onRestored }) {
  const [versions, setVersions] = useState(null);
  const load = () => get('/files/versions', { path: entry.path }).then((r) => setVersions(r.versions), (e) => { toastError(e); setVersions([]); });
  useEffect(() => { load(); }, []);
  const restore = async (v) => {
    try {
      await post('/files/restore', { path: entry.path, version: v.id });
      toast(`Restored the version of ${date(v.created_at)}.`);
      onRestored && onRestored();
      load();
    } catch (e) { toastError(e); }
  };
  return (
    <Dialog title={`Versions of ${entry.name}`} onClose={onClose} wide>
      <p class="muted small">Restoring makes an old version the current one again (the current one stays in the list).</p>
      {versions === null ? <p>Loading…</p> : (
        <table class="table">
          <caption class="sr-only">Versions, newest first</caption>
          <thead><tr><th scope="col">Saved</th><th scope="col">Size</th><th scope="col">By</th><th scope="col">Device</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {versions.map((v, i) => (
              <tr key={v.id}>
                <td>{date(v.created_at)}{i === 0 ? ' (current)' : ''}</td>
                <td>{size(v.size)}</td>
                <td>{v.user}</td>
                <td>{v.device || '—'}</td>
                <td class="row-actions">
                  <a class="button" href={contentUrl(entry.path, i === 0 ? undefined : { version: v.id })} download={entry.name} aria-label={`Download the version of ${date(v.created_at)}`}>Download</a>
                  {i > 0 && <button type="button" onClick={() => restore(v)} aria-label={`Restore the version of ${date(v.created_at)}`}>Restore</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Dialog>
  );
}

export function ShareDialog({ entry, onClose }) {
  const [members, setMembers] = useState(null);
  const [user, setUser] = useState('');
  const [role, setRole] = useState('editor');
  const [error, setError] = useState('');
  const load = () => get('/shares').then((r) => {
    const s = r.shares.find((x) => x.path === entry.path);
    setMembers(s ? s.members : []);
  }, (e) => { setError(e.message); setMembers([]); });
  useEffect(() => { load(); }, []);
  const add = async (e) => {
    e.preventDefault();
    setError('');
    try {
      await post('/shares', { path: entry.path, with: user.trim(), role });
      setUser('');
      load();
    } catch (err) { setError(err.message); }
  };
  const remove = async (m) => {
    try { await post('/shares/remove', { path: entry.path, with: m.user }); load(); } catch (e) { setError(e.message); }
  };
  return (
    <Dialog title={`Share “${entry.name}”`} onClose={onClose}>
      <form class="inline-form" onSubmit={add}>
        <label class="field grow"><span>User name</span><input autofocus value={user} onInput={(e) => setUser(e.currentTarget.value)} required /></label>
        <label class="field"><span>Role</span>
          <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            <option value="editor">Editor</option><option value="viewer">Viewer</option>
          </select>
        </label>
        <button class="primary" type="submit">Share</button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
      <h3>People with access</h3>
      {members === null ? <p>Loading…</p> : members.length === 0 ? <p class="muted">Only you.</p> : (
        <ul class="members">
          {members.map((m) => (
            <li key={m.user}><Icon name="user" /> <span class="grow">{m.user}</span> <span class="muted">{m.role}</span>
              {m.role !== 'owner' && <button type="button" onClick={() => remove(m)} aria-label={`Remove ${m.user}`}>Remove</button>}
            </li>
          ))}
        </ul>
      )}
    </Dialog>
  );
}

export function LinkDialog({ entry, onClose }) {
  const [password, setPassword] = useState('');
  const [expires, setExpires] = useState('');
  const [max, setMax] = useState('');
  const [uploadOnly, setUploadOnly] = useState(false);
  const [link, setLink] = useState(null);
  const [error, setError] = useState('');
  const create = async (e) => {
    e.preventDefault();
    setError('');
    const body = { path: entry.path, upload_only: uploadOnly };
    if (password) body.password = password;
    if (expires) body.expires_at = new Date(expires + 'T23:59:59').getTime();
    if (max && !uploadOnly) body.max_downloads = Number(max);
    try { setLink(await post('/links', body)); } catch (err) { setError(err.message); }
  };
  const url = link && new URL(link.url, location.origin).href;
  const copy = async () => {
    try { await navigator.clipboard.writeText(url); toast('Link copied.'); } catch { toast('Select the link and copy it.'); }
  };
  return (
    <Dialog title={`Link to “${entry.name}”`} onClose={onClose}>
      {link ? (
        <div>
          <label class="field"><span>Link</span><input readOnly value={url} onFocus={(e) => e.currentTarget.select()} autofocus data-testid="link-url" /></label>
          <div class="dialog-actions">
            <button type="button" onClick={copy}>Copy link</button>
            <button class="primary" type="button" onClick={onClose}>Done</button>
          </div>
        </div>
      ) : (
        <form onSubmit={create}>
          <label class="field"><span>Password (optional)</span><input type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></label>
          <label class="field"><span>Expires on (optional)</span><input type="date" value={expires} onInput={(e) => setExpires(e.currentTarget.value)} /></label>
          {!uploadOnly && <label class="field"><span>Most downloads (optional)</span><input type="number" min="1" value={max} onInput={(e) => setMax(e.currentTarget.value)} /></label>}
          {entry.kind === 'folder' && <label class="check"><input type="checkbox" checked={uploadOnly} onChange={(e) => setUploadOnly(e.currentTarget.checked)} /> Upload only (a file drop)</label>}
          {error && <p class="error" role="alert">{error}</p>}
          <div class="dialog-actions">
            <button type="button" onClick={onClose}>Cancel</button>
            <button class="primary" type="submit">Create link</button>
          </div>
        </form>
      )}
    </Dialog>
  );
}

/** A preview: nothing of the file's own can run script here. Images and media go in
 * elements that never run script, text is shown as text, and a PDF in a frame whose
 * content the server sends with `Content-Security-Policy: default-src 'none'; sandbox`,
 * nosniff and its own type. The frame itself has no `sandbox` attribute: Chromium
 * refuses to show a PDF in a sandboxed frame, and the header already sandboxes it. */
export function PreviewDialog({ entry, onClose, onPrev, onNext }) {
  const t = fileType(entry);
  const inline = contentUrl(entry.path, { inline: 1 });
  const [text, setText] = useState(null);
  const [imgSrc, setImgSrc] = useState(thumbUrl(entry.path, 1024));
  useEffect(() => {
    setImgSrc(thumbUrl(entry.path, 1024));
    if (t !== 'text' && t !== 'code') return;
    setText(null);
    const ctl = new AbortController();
    fetch(contentUrl(entry.path, { inline: 1 }), { headers: { Range: 'bytes=0-262143' }, signal: ctl.signal, credentials: 'same-origin' })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then(setText, (e) => e.name !== 'AbortError' && setText(`(cannot show this file: ${e.message})`));
    return () => ctl.abort();
  }, [entry.path]);
  const onKey = (e) => {
    if (e.key === 'ArrowRight' && onNext && e.target.tagName !== 'VIDEO' && e.target.tagName !== 'AUDIO') onNext();
    if (e.key === 'ArrowLeft' && onPrev && e.target.tagName !== 'VIDEO' && e.target.tagName !== 'AUDIO') onPrev();
  };
  return (
    <Dialog title={entry.name} onClose={onClose} wide>
      <div class="preview" onKeyDown={onKey}>
        {t === 'image' && <img src={imgSrc} alt={entry.name} onError={() => imgSrc !== inline && setImgSrc(inline)} />}
        {t === 'video' && <video src={inline} controls preload="metadata" />}
        {t === 'audio' && <audio src={inline} controls preload="metadata" />}
        {t === 'pdf' && <iframe src={inline} title={`PDF: ${entry.name}`} />}
        {(t === 'text' || t === 'code') && <pre tabIndex={0} class="text-preview">{text === null ? 'Loading…' : text}</pre>}
      </div>
      <div class="dialog-actions">
        {onPrev && <button type="button" onClick={onPrev}>Previous</button>}
        {onNext && <button type="button" onClick={onNext}>Next</button>}
        {t === 'pdf' && <a class="button" href={inline} target="_blank" rel="noopener">Open in a new tab</a>}
        <a class="button primary" href={contentUrl(entry.path)} download={entry.name}>Download</a>
      </div>
    </Dialog>
  );
}

export function ConflictDialog() {
  const { conflict } = useStore();
  const [all, setAll] = useState(false);
  if (!conflict) return null;
  const a = (c) => conflict.answer(c, all);
  return (
    <Dialog title="A file with this name exists" onClose={() => a('skip')}>
      <p>“{base(conflict.name)}” already exists in {parent(conflict.name)}.</p>
      <label class="check"><input type="checkbox" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} /> Do this for the other files too</label>
      <div class="dialog-actions">
        <button type="button" onClick={() => a('skip')}>Skip</button>
        <button type="button" onClick={() => a('replace')}>Replace</button>
        <button class="primary" type="button" autofocus onClick={() => a('rename')}>Keep both</button>
      </div>
    </Dialog>
  );
}

/** The sign-in form, shown over whatever is on screen so nothing underneath is lost. */
export function SignIn() {
  const { needAuth, user } = useStore();
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const first = useRef();
  useEffect(() => { if (needAuth && first.current) first.current.focus(); }, [needAuth]);
  if (!needAuth) return null;
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await signIn(name.trim(), password);
      setPassword('');
    } catch (err) {
      setError(err.status === 401 ? 'Wrong user name or password.' : err.status === 429 ? 'Too many attempts. Wait a moment and try again.' : err.message);
    }
    setBusy(false);
  };
  return (
    <div class="signin-backdrop">
      <form class="signin" onSubmit={submit} role="dialog" aria-modal="true" aria-labelledby="signin-title">
        <div class="brand-big"><svg width="32" height="32" viewBox="0 0 100 100" aria-hidden="true"><rect width="100" height="100" rx="20" class="logo-bg" /><g class="logo-fg"><ellipse cx="50" cy="74" rx="30" ry="11" /><ellipse cx="50" cy="52" rx="22" ry="9" /><ellipse cx="50" cy="33" rx="14" ry="7.5" /></g></svg> Cairn</div>
        <h1 id="signin-title">Sign in</h1>
        {user === null && <p class="muted">Your session has ended or you are not signed in.</p>}
        <label class="field"><span>User name</span><input ref={first} name="username" autocomplete="username" value={name} onInput={(e) => setName(e.currentTarget.value)} required /></label>
        <label class="field"><span>Password</span><input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required /></label>
        {error && <p class="error" role="alert">{error}</p>}
        <button class="primary wide" type="submit" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </div>
  );
}

export { api };
