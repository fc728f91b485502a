// The shell: header with search, navigation, the page for the route, uploads, toasts,
// and the sign-in overlay (over everything, so nothing underneath is lost).
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { get, loadSession, signOut } from './api.js';
import { dismiss, store, useStore } from './store.js';
import { go, useRoute, filesHref } from './router.js';
import { onChange, startNotify, stopNotify } from './notify.js';
import { cancel, cancelAll, clearFinished, forgetInterrupted, interruptedCount } from './uploads.js';
import { size } from './util.js';
import { Icon } from './ui.jsx';
import { ConflictDialog, SignIn } from './dialogs.jsx';
import { FilesView } from './files.jsx';
import { AccountView, AdminView, LinksView, SearchView, TrashView } from './views.jsx';

function App() {
  const { user, needAuth } = useStore();
  const route = useRoute();
  const [navOpen, setNavOpen] = useState(false);
  const ever = useRef(false);
  if (user) ever.current = true;

  useEffect(() => { loadSession(); }, []);
  useEffect(() => {
    if (user && !needAuth) startNotify();
    else if (!user) stopNotify();
  }, [user, needAuth]);
  useEffect(() => setNavOpen(false), [route.view, route.path]);

  const q = route.view === 'search' ? route.params.get('q') || '' : '';
  useEffect(() => {
    const names = { trash: 'Trash', search: 'Search', links: 'Shared links', account: 'Account', admin: 'Users' };
    const here = names[route.view] || (route.path === '/' ? 'My files' : route.path.slice(route.path.lastIndexOf('/') + 1));
    document.title = `${here} – Cairn`;
  }, [route.view, route.path]);
  const onSearch = (e) => {
    const v = e.currentTarget.value;
    go('#/search' + (v ? '?q=' + encodeURIComponent(v) : ''));
  };

  let page = null;
  if (ever.current) {
    if (route.view === 'trash') page = <TrashView />;
    else if (route.view === 'search') page = <SearchView q={q} />;
    else if (route.view === 'links') page = <LinksView />;
    else if (route.view === 'account') page = <AccountView user={user} />;
    else if (route.view === 'admin') page = <AdminView />;
    else page = <FilesView key="files" path={route.path} select={route.params.get('select')} user={user} />;
  }
  const nav = [
    ['files', filesHref('/'), 'My files', 'folder'],
    ['links', '#/links', 'Shared links', 'link'],
    ['trash', '#/trash', 'Trash', 'trash'],
    ['account', '#/account', 'Account', 'user'],
  ];
  if (user && user.is_admin) nav.push(['admin', '#/admin', 'Users', 'admin']);

  return (
    <>
      {!needAuth && <a class="skip" href="#main">Skip to content</a>}
      <header class="top" inert={needAuth}>
        <button type="button" class="icon-btn menu-btn" aria-label="Menu" aria-expanded={navOpen ? 'true' : 'false'} onClick={() => setNavOpen(!navOpen)}><Icon name="menu" /></button>
        <a class="brand" href={filesHref("/")} aria-label="Cairn: my files"><svg width="28" height="28" viewBox="0 0 100 100" aria-hidden="true"><rect width="100" height="100" rx="20" class="logo-bg" /><g class="logo-fg"><ellipse cx="50" cy="74" rx="30" ry="11" /><ellipse cx="50" cy="52" rx="22" ry="9" /><ellipse cx="50" cy="33" rx="14" ry="7.5" /></g></svg><span>Cairn</span></a>
        <form class="search" role="search" onSubmit={(e) => e.preventDefault()}>
          <Icon name="search" />
          <input type="search" aria-label="Search files by name" placeholder="Search files" value={q} onInput={onSearch} data-testid="search" />
        </form>
        {user && <button type="button" class="signout" onClick={() => signOut().then(() => location.reload())}>Sign out</button>}
      </header>
      <div class="body" inert={needAuth}>
        <nav class={'side' + (navOpen ? ' open' : '')} aria-label="Main">
          <ul>
            {nav.map(([v, href, label, icon]) => (
              <li key={v}><a href={href} aria-current={route.view === v ? 'page' : undefined}><Icon name={icon} /> {label}</a></li>
            ))}
          </ul>
          {user && <Storage key={route.view + route.path} />}
        </nav>
        <main id="main" tabIndex={-1}>{page}</main>
      </div>
      <Uploads />
      <Toasts />
      <ConflictDialog />
      <SignIn />
    </>
  );
}

/** Storage used against the quota, read again after changes to the account's files
 * (told by the notification socket, a burst of them read once; never polled). */
function Storage() {
  const [acct, setAcct] = useState(null);
  useEffect(() => {
    let t = null;
    const load = () => get('/account').then(setAcct, () => {});
    load();
    const off = onChange(() => { clearTimeout(t); t = setTimeout(load, 500); });
    return () => { off(); clearTimeout(t); };
  }, []);
  if (!acct) return null;
  const quota = acct.user.quota_bytes;
  const pct = quota ? Math.min(100, (acct.usage_bytes / quota) * 100) : 0;
  return (
    <a class="storage" href="#/account">
      {quota ? <span class="meter" aria-hidden="true"><span class="meter-bar" style={{ width: `${pct}%` }} /></span> : null}
      <span class="small muted">{size(acct.usage_bytes)} used{quota ? ` of ${size(quota)}` : ''}</span>
    </a>
  );
}

function Uploads() {
  const { uploads } = useStore();
  const [open, setOpen] = useState(true);
  const [stale, setStale] = useState(() => interruptedCount());
  if (!uploads.length && !stale) return null;
  if (!uploads.length) {
    return (
      <div class="uploads note" role="status">
        <p>{stale} upload{stale > 1 ? 's were' : ' was'} interrupted. Add the same file{stale > 1 ? 's' : ''} to the same folder again to resume.</p>
        <button type="button" onClick={() => { forgetInterrupted(); setStale(0); }}>Forget</button>
      </div>
    );
  }
  const active = uploads.filter((u) => u.status === 'uploading' || u.status === 'queued');
  const total = uploads.reduce((a, u) => a + (u.status === 'canceled' || u.status === 'skipped' ? 0 : u.size), 0);
  const sent = uploads.reduce((a, u) => a + (u.status === 'canceled' || u.status === 'skipped' ? 0 : u.sent), 0);
  const speed = active.reduce((a, u) => a + (u.speed || 0), 0);
  const pct = total ? Math.floor((sent / total) * 100) : 100;
  return (
    <section class="uploads" aria-label="Uploads" data-testid="uploads">
      <div class="uploads-head">
        <strong>{active.length ? `Uploading ${active.length} of ${uploads.length}` : `${uploads.filter((u) => u.status === 'done').length} of ${uploads.length} uploaded`}</strong>
        <span class="muted small" data-testid="total-progress">{pct}%{speed ? <span class="head-speed">{` · ${size(speed)}/s`}</span> : ''}</span>
        <button type="button" class="icon-btn" aria-expanded={open ? 'true' : 'false'} aria-label={open ? 'Hide uploads' : 'Show uploads'} onClick={() => setOpen(!open)}><Icon name={open ? 'list' : 'up'} /></button>
        {active.length ? <button type="button" onClick={cancelAll}>Cancel all</button> : <button type="button" class="icon-btn" aria-label="Close uploads" onClick={() => { clearFinished(); setStale(interruptedCount()); }}><Icon name="close" /></button>}
      </div>
      <progress max="100" value={pct} aria-label="Total upload progress" />
      {open && (
        <ul>
          {uploads.map((u) => (
            <li key={u.id} data-status={u.status}>
              <span class="name grow" title={u.dest}>{u.name}</span>
              <span class="muted small">{u.status === 'uploading' ? `${u.size ? Math.floor((u.sent / u.size) * 100) : 0}%${u.speed ? ' · ' + size(u.speed) + '/s' : ''}` : u.status === 'error' ? u.error : u.status}</span>
              <progress max={u.size || 1} value={u.sent} aria-label={`Progress of ${u.name}`} />
              {(u.status === 'uploading' || u.status === 'queued') && <button type="button" class="icon-btn" aria-label={`Cancel ${u.name}`} onClick={() => cancel(u.id)}><Icon name="close" size={16} /></button>}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Toasts() {
  const { toasts } = useStore();
  return (
    <div class="toasts" role="status" aria-live="polite">
      {toasts.map((t) => (
        <div class="toast" key={t.id}>
          <span>{t.text}</span>
          {t.action && <button type="button" onClick={() => { dismiss(t.id); t.action.run(); }}>{t.action.label}</button>}
          <button type="button" class="icon-btn" aria-label="Dismiss" onClick={() => dismiss(t.id)}><Icon name="close" size={16} /></button>
        </div>
      ))}
    </div>
  );
}

render(<App />, document.getElementById('app'));
if (!location.hash) history.replaceState(null, '', '#/files/');
window.cairnStore = store; // for the browser tests and for debugging
