// The other pages: trash, search, links, account (with app passwords), admin.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, get, post, contentUrl } from './api.js';
import { toast, toastError } from './store.js';
import { filesHref, go } from './router.js';
import { base, date, fileType, parent, size } from './util.js';
import { Icon } from './ui.jsx';
import { ConfirmDialog } from './dialogs.jsx';
import { Dialog } from './ui.jsx';
import { onChange } from './notify.js';

export function TrashView() {
  const [items, setItems] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const load = async () => {
    try {
      const all = [];
      let after;
      for (;;) {
        const r = await get('/trash', { limit: 1000, after });
        all.push(...r.items);
        if (!r.next_after) break;
        after = r.next_after;
      }
      setItems(all);
    } catch (e) { toastError(e); setItems([]); }
  };
  useEffect(() => { load(); return onChange(() => load()); }, []);
  const restore = async (it) => {
    try {
      const r = await post('/trash/restore', { id: it.id });
      toast(`Restored “${base(it.path)}”.`, { label: 'Show', run: () => go(filesHref(parent(r.entry ? r.entry.path : it.path))) });
      load();
    } catch (e) { toastError(e); }
  };
  const purge = async (it) => {
    try { await post('/trash/purge', it ? { id: it.id } : { all: true }); load(); toast(it ? 'Deleted forever.' : 'Trash emptied.'); } catch (e) { toastError(e); }
  };
  return (
    <section class="page" aria-labelledby="trash-title">
      <div class="page-head">
        <h1 id="trash-title">Trash</h1>
        {items && items.length > 0 && <button type="button" class="danger" onClick={() => setConfirm({ all: true })}>Empty trash</button>}
      </div>
      {items === null ? <p class="muted" role="status">Loading…</p> : items.length === 0 ? <p class="muted">The trash is empty.</p> : (
        <table class="table">
          <thead><tr><th scope="col">Name</th><th scope="col">Was in</th><th scope="col">Size</th><th scope="col">Deleted</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {items.map((it) => (
              <tr key={it.id} data-path={it.path}>
                <td><Icon name={fileType({ kind: it.kind, name: base(it.path) })} /> <span class="name">{base(it.path)}</span></td>
                <td>{parent(it.path)}</td>
                <td>{it.kind === 'file' ? size(it.size) : `${it.file_count} files`}</td>
                <td>{date(it.deleted_at)} <span class="muted">by {it.deleted_by}</span></td>
                <td class="row-actions">
                  <button type="button" onClick={() => restore(it)} aria-label={`Restore ${base(it.path)}`}>Restore</button>
                  <button type="button" class="danger" onClick={() => setConfirm(it)} aria-label={`Delete ${base(it.path)} forever`}>Delete forever</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {confirm && <ConfirmDialog title={confirm.all ? 'Empty the trash?' : 'Delete forever?'} danger action="Delete forever"
        text={confirm.all ? 'Everything in the trash will be deleted forever.' : `“${base(confirm.path)}” will be deleted forever.`}
        onConfirm={() => purge(confirm.all ? null : confirm)} onClose={() => setConfirm(null)} />}
    </section>
  );
}

export function SearchView({ q }) {
  const [res, setRes] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    if (!q.trim()) { setRes(null); return; }
    const ctl = new AbortController();
    const t = setTimeout(() => {
      get('/files/search', { q, limit: 200 }, { signal: ctl.signal }).then((r) => { setRes(r); setError(''); }, (e) => {
        if (e.name === 'AbortError') return;
        setError(e.status === 404 ? 'Search is not available on this server yet.' : e.message);
        setRes({ entries: [] });
      });
    }, 120);
    return () => { clearTimeout(t); ctl.abort(); };
  }, [q]);
  const open = (e) => {
    if (e.kind === 'folder') go(filesHref(e.path));
    else go(filesHref(parent(e.path)) + '?select=' + encodeURIComponent(e.name));
  };
  return (
    <section class="page" aria-labelledby="search-title">
      <h1 id="search-title">Search{q ? <> for “<span>{q}</span>”</> : ''}</h1>
      {error && <p class="error" role="alert">{error}</p>}
      {!q.trim() ? <p class="muted">Type in the search box to find files by name.</p> : res === null ? <p class="muted" role="status">Searching…</p> : (
        <>
          <p class="muted" role="status">{res.entries.length === 0 ? 'Nothing found.' : `${res.entries.length}${res.truncated ? '+' : ''} found`}</p>
          <ul class="results">
            {res.entries.map((e) => (
              <li key={e.path}>
                <button type="button" class="result" onClick={() => open(e)}>
                  <Icon name={fileType(e)} />
                  <span class="name">{e.name}</span>
                  <span class="muted small">{parent(e.path)}</span>
                </button>
                {e.kind === 'file' && <a class="button" href={contentUrl(e.path)} download={e.name} aria-label={`Download ${e.name}`}><Icon name="download" /></a>}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

export function LinksView() {
  const [links, setLinks] = useState(null);
  const load = () => get('/links').then((r) => setLinks(r.links), (e) => { toastError(e); setLinks([]); });
  useEffect(() => { load(); }, []);
  const revoke = async (l) => {
    try { await post('/links/revoke', { id: l.id }); toast('Link revoked.'); load(); } catch (e) { toastError(e); }
  };
  const copy = async (l) => {
    try { await navigator.clipboard.writeText(new URL(l.url, location.origin).href); toast('Link copied.'); } catch { toast('Could not copy.'); }
  };
  return (
    <section class="page" aria-labelledby="links-title">
      <h1 id="links-title">Shared links</h1>
      {links === null ? <p class="muted" role="status">Loading…</p> : links.length === 0 ? <p class="muted">No links yet. Select a file or folder and choose “Link”.</p> : (
        <table class="table">
          <thead><tr><th scope="col">Item</th><th scope="col">Status</th><th scope="col">Downloads</th><th scope="col">Expires</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {links.map((l) => (
              <tr key={l.id}>
                <td><span class="name">{l.path || '(deleted)'}</span>{l.has_password && <span class="badge">password</span>}{l.upload_only && <span class="badge">upload only</span>}</td>
                <td>{l.status}</td>
                <td>{l.downloads}{l.max_downloads ? ` / ${l.max_downloads}` : ''}</td>
                <td>{l.expires_at ? date(l.expires_at) : 'never'}</td>
                <td class="row-actions">
                  {l.status === 'active' && <button type="button" onClick={() => copy(l)}>Copy</button>}
                  {l.status === 'active' && <button type="button" class="danger" onClick={() => revoke(l)}>Revoke</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Meter({ used, quota, label }) {
  const pct = quota ? Math.min(100, (used / quota) * 100) : 0;
  return (
    <div class="meter-wrap">
      <div class="meter" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)}>
        <div class="meter-bar" style={{ width: `${pct}%` }} />
      </div>
      <p>{size(used)} used{quota ? ` of ${size(quota)}` : ' (no quota)'}</p>
    </div>
  );
}

export function AccountView({ user }) {
  const [acct, setAcct] = useState(null);
  const [oldPw, setOld] = useState('');
  const [newPw, setNew] = useState('');
  const [msg, setMsg] = useState('');
  const [err, setErr] = useState('');
  // Bumped by a password change, which revokes every app password: the list reloads.
  const [changes, setChanges] = useState(0);
  useEffect(() => { get('/account').then(setAcct, toastError); }, []);
  const change = async (e) => {
    e.preventDefault();
    setMsg(''); setErr('');
    try {
      await post('/account/password', { old_password: oldPw, new_password: newPw });
      setOld(''); setNew('');
      setMsg('Password changed. Other sessions and devices were signed out, and app passwords revoked.');
      setChanges((n) => n + 1);
    } catch (e2) { setErr(e2.status === 403 ? 'The current password is wrong.' : e2.message); }
  };
  return (
    <section class="page narrow" aria-labelledby="acct-title">
      <h1 id="acct-title">Account</h1>
      <p>Signed in as <strong>{user && user.name}</strong>{user && user.is_admin ? ' (administrator)' : ''}.</p>
      <h2>Storage</h2>
      {acct ? <Meter used={acct.usage_bytes} quota={acct.user.quota_bytes} label="Storage used" /> : <p class="muted">Loading…</p>}
      <h2>Change password</h2>
      <form onSubmit={change} class="stack">
        <input type="text" name="username" autocomplete="username" value={user ? user.name : ''} hidden readOnly />
        <label class="field"><span>Current password</span><input type="password" autocomplete="current-password" value={oldPw} onInput={(e) => setOld(e.currentTarget.value)} required /></label>
        <label class="field"><span>New password</span><input type="password" autocomplete="new-password" minLength={8} value={newPw} onInput={(e) => setNew(e.currentTarget.value)} required /></label>
        {err && <p class="error" role="alert">{err}</p>}
        {msg && <p class="ok" role="status">{msg}</p>}
        <button class="primary" type="submit">Change password</button>
      </form>
      <AppPasswords key={changes} user={user} />
    </section>
  );
}

/** The account's app passwords: made here (shown once), listed, revoked. */
function AppPasswords({ user }) {
  const [list, setList] = useState(null);
  const [name, setName] = useState('');
  const [made, setMade] = useState(null); // { name, password }, until dismissed
  const [err, setErr] = useState('');
  const [confirm, setConfirm] = useState(null);
  const load = () => get('/account/app-passwords').then((r) => setList(r.app_passwords), (e) => { toastError(e); setList([]); });
  useEffect(() => { load(); }, []);
  const create = async (e) => {
    e.preventDefault();
    setErr('');
    try {
      const r = await post('/account/app-passwords', { name: name.trim() });
      setName('');
      setMade(r);
      load();
    } catch (e2) { setErr(e2.message); }
  };
  const revoke = async (a) => {
    try {
      await api('DELETE', `/account/app-passwords/${encodeURIComponent(a.name)}`);
      toast(`App password “${a.name}” revoked.`);
      if (made && made.name === a.name) setMade(null);
      load();
    } catch (e) { toastError(e); }
  };
  const copy = async () => {
    try { await navigator.clipboard.writeText(made.password); toast('Password copied.'); } catch { toast('Could not copy.'); }
  };
  const dav = new URL('/dav/', location.origin).href;
  return (
    <>
      <h2>App passwords</h2>
      <p class="muted">WebDAV clients (Finder, Windows Explorer, rclone, phone apps) sign in at <code>{dav}</code> with your user name{user ? <> (<strong>{user.name}</strong>)</> : ''} and an app password, never your account password. Make one per client, to revoke it alone.</p>
      {made && (
        <div class="secret" role="status" aria-live="polite">
          <p>App password “{made.name}”, shown only this once:</p>
          <p><code data-testid="new-app-password">{made.password}</code></p>
          <div class="row-actions">
            <button type="button" onClick={copy}>Copy</button>
            <button type="button" onClick={() => setMade(null)}>Done</button>
          </div>
        </div>
      )}
      <form class="inline-form" onSubmit={create}>
        <label class="field"><span>App password name</span><input value={name} maxLength={64} placeholder="e.g. phone, rclone" onInput={(e) => setName(e.currentTarget.value)} required autocomplete="off" /></label>
        <button class="primary" type="submit">Create app password</button>
      </form>
      {err && <p class="error" role="alert">{err}</p>}
      {list === null ? <p class="muted" role="status">Loading…</p> : list.length === 0 ? <p class="muted">No app passwords yet.</p> : (
        <table class="table">
          <caption class="sr-only">App passwords</caption>
          <thead><tr><th scope="col">Name</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {list.map((a) => (
              <tr key={a.name}>
                <td><span class="name">{a.name}</span></td>
                <td>{date(a.created_at)}</td>
                <td>{a.last_used_at ? date(a.last_used_at) : 'never'}</td>
                <td class="row-actions">
                  <button type="button" class="danger" onClick={() => setConfirm(a)} aria-label={`Revoke ${a.name}`}>Revoke</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {confirm && (
        <ConfirmDialog
          title={`Revoke “${confirm.name}”?`}
          text="Clients that sign in with it stop working at their next request."
          action="Revoke"
          danger
          onConfirm={() => revoke(confirm)}
          onClose={() => setConfirm(null)}
        />
      )}
    </>
  );
}

export function AdminView() {
  const [users, setUsers] = useState(null);
  const [err, setErr] = useState('');
  const [name, setName] = useState('');
  const [pw, setPw] = useState('');
  const [quota, setQuota] = useState('');
  const [admin, setAdmin] = useState(false);
  const load = () => get('/admin/users').then((r) => setUsers(r.users), (e) => { setErr(e.message); setUsers([]); });
  useEffect(() => { load(); }, []);
  const gib = (s) => (s.trim() === '' ? null : Math.round(Number(s) * 1024 ** 3));
  const add = async (e) => {
    e.preventDefault();
    setErr('');
    try {
      await post('/admin/users', { name: name.trim(), password: pw, quota_bytes: gib(quota), is_admin: admin });
      setName(''); setPw(''); setQuota(''); setAdmin(false);
      toast('User added.');
      load();
    } catch (e2) {
      setErr(e2.status === 404 || e2.status === 405 ? 'This server cannot add users over the API yet: use “cairn admin user add NAME” on the server.' : e2.message);
    }
  };
  const toggle = async (u) => {
    try { await post(`/admin/users/${encodeURIComponent(u.name)}/${u.disabled ? 'enable' : 'disable'}`); load(); } catch (e) { toastError(e); }
  };
  const [edit, setEdit] = useState(null); // {user, what: 'quota' | 'password'}
  return (
    <section class="page" aria-labelledby="admin-title">
      <h1 id="admin-title">Users</h1>
      {err && <p class="error" role="alert">{err}</p>}
      {users === null ? <p class="muted" role="status">Loading…</p> : (
        <table class="table">
          <thead><tr><th scope="col">Name</th><th scope="col">Used</th><th scope="col">Quota</th><th scope="col">Status</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.id}>
                <td>{u.name}{u.is_admin && <span class="badge">admin</span>}</td>
                <td>{size(u.usage_bytes)}</td>
                <td>{u.quota_bytes ? size(u.quota_bytes) : 'none'}</td>
                <td>{u.disabled ? 'disabled' : 'active'}</td>
                <td class="row-actions">
                  <button type="button" onClick={() => setEdit({ user: u, what: 'quota' })} aria-label={`Set quota of ${u.name}`}>Quota</button>
                  <button type="button" onClick={() => setEdit({ user: u, what: 'password' })} aria-label={`Set password of ${u.name}`}>Password</button>
                  <button type="button" onClick={() => toggle(u)} aria-label={`${u.disabled ? 'Enable' : 'Disable'} ${u.name}`}>{u.disabled ? 'Enable' : 'Disable'}</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Add a user</h2>
      <form class="inline-form" onSubmit={add}>
        <label class="field"><span>Name</span><input value={name} onInput={(e) => setName(e.currentTarget.value)} required autocomplete="off" /></label>
        <label class="field"><span>Password</span><input type="password" autocomplete="new-password" value={pw} onInput={(e) => setPw(e.currentTarget.value)} required /></label>
        <label class="field"><span>Quota, GiB</span><input type="number" min="0" step="any" value={quota} onInput={(e) => setQuota(e.currentTarget.value)} /></label>
        <label class="check"><input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.currentTarget.checked)} /> Administrator</label>
        <button class="primary" type="submit">Add</button>
      </form>
      {edit && <UserEdit {...edit} gib={gib} onClose={() => setEdit(null)} onDone={load} />}
      <h2>Storage check</h2>
      <Fsck />
    </section>
  );
}

function UserEdit({ user, what, gib, onClose, onDone }) {
  const [value, setValue] = useState(what === 'quota' && user.quota_bytes ? String(user.quota_bytes / 1024 ** 3) : '');
  const [err, setErr] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    setErr('');
    try {
      const name = encodeURIComponent(user.name);
      if (what === 'quota') await api('PUT', `/admin/users/${name}/quota`, { quota_bytes: gib(value) });
      else await post(`/admin/users/${name}/password`, { password: value });
      toast(what === 'quota' ? 'Quota set.' : 'Password set.');
      onDone();
      onClose();
    } catch (e2) {
      setErr(e2.status === 404 || e2.status === 405 ? 'This server cannot set quotas over the API yet: use the cairn admin command on the server.' : e2.message);
    }
  };
  return (
    <Dialog title={what === 'quota' ? `Quota of ${user.name}` : `New password for ${user.name}`} onClose={onClose}>
      <form onSubmit={submit}>
        {what === 'quota'
          ? <label class="field"><span>Quota in GiB (empty for none)</span><input type="number" min="0" step="any" autofocus value={value} onInput={(e) => setValue(e.currentTarget.value)} /></label>
          : <label class="field"><span>New password</span><input type="password" autocomplete="new-password" autofocus required value={value} onInput={(e) => setValue(e.currentTarget.value)} /></label>}
        {err && <p class="error" role="alert">{err}</p>}
        <div class="dialog-actions">
          <button type="button" onClick={onClose}>Cancel</button>
          <button class="primary" type="submit">Save</button>
        </div>
      </form>
    </Dialog>
  );
}

/** The last `cairn admin fsck`, as the server recorded it. */
function Fsck() {
  const [r, setR] = useState(undefined);
  useEffect(() => {
    get('/admin/fsck').then((x) => setR(x.last), (e) => setR(e.status === 404 ? 'unsupported' : e.message));
  }, []);
  if (r === undefined) return <p class="muted">Loading…</p>;
  if (r === 'unsupported') return <p class="muted">This server does not report its last check; run <code>cairn admin fsck</code> on the server.</p>;
  if (typeof r === 'string') return <p class="error">{r}</p>;
  if (r === null) return <p class="muted" data-testid="fsck">No check has run yet. Run <code>cairn admin fsck</code> on the server.</p>;
  const problems = r.missing_blocks.length + r.corrupt_blocks.length + r.size_mismatches.length + r.inconsistencies.length;
  return (
    <div data-testid="fsck">
      <p class={r.clean ? 'ok' : 'error'}>
        {r.clean ? 'Clean' : `${problems} problem${problems === 1 ? '' : 's'} found`} — last run {date(r.finished_at)}:
        {' '}{r.blocks_checked} blocks, {size(r.bytes_verified)} verified.
      </p>
      {r.damaged_files.length > 0 && (
        <table class="table">
          <caption class="sr-only">Damaged files</caption>
          <thead><tr><th scope="col">User</th><th scope="col">File</th><th scope="col">Version</th></tr></thead>
          <tbody>
            {r.damaged_files.map((f) => (
              <tr key={f.namespace + f.path + f.version}>
                <td>{f.user}</td>
                <td>{f.path}{f.in_trash ? ' (in the trash)' : ''}</td>
                <td>{f.is_current ? 'current' : 'older'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
