// The file browser: breadcrumbs, sortable virtualized list or grid, selection with
// mouse and keyboard, drag and drop (move onto folders and breadcrumbs, upload from
// the desktop), and the actions on a selection.
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { listAll, post, contentUrl, zipUrl, thumbUrl } from './api.js';
import { toast, toastError } from './store.js';
import { localChange, onChange } from './notify.js';
import { enqueue, filesFromDrop, filesFromInput, onUploaded } from './uploads.js';
import { filesHref, go } from './router.js';
import { base, collator, date, fileType, join, parent, segments, size } from './util.js';
import { Icon, Menu } from './ui.jsx';
import { ConfirmDialog, FolderPicker, LinkDialog, PreviewDialog, PromptDialog, ShareDialog, VersionsDialog } from './dialogs.jsx';

const ROW = 44;
const CELL = 188;
const DRAG_TYPE = 'application/x-cairn-paths';
const touch = matchMedia('(pointer: coarse)');

export function sortEntries(entries, key, dir) {
  const out = entries.slice();
  const sign = dir === 'desc' ? -1 : 1;
  out.sort((a, b) => {
    if (a.kind !== b.kind) return a.kind === 'folder' ? -1 : 1;
    let c = 0;
    if (key === 'size') c = a.size - b.size;
    else if (key === 'date') c = a.modified_at - b.modified_at;
    if (c === 0) c = collator.compare(a.name, b.name);
    return c * sign;
  });
  return out;
}

export async function moveInto(paths, dest) {
  let n = 0;
  for (const from of paths) {
    if (parent(from) === dest || dest === from || dest.startsWith(from + '/')) continue;
    try {
      await post('/files/move', { from, to: join(dest, base(from)) });
      n++;
    } catch (e) { toastError(e); }
  }
  if (n) {
    localChange();
    toast(`Moved ${n === 1 ? '1 item' : n + ' items'} to ${dest === '/' ? 'My files' : base(dest)}.`);
  }
}

export async function trashPaths(paths, after) {
  const done = [];
  for (const path of paths) {
    try { await post('/files/delete', { path }); done.push(path); } catch (e) { toastError(e); }
  }
  if (!done.length) return;
  after && after();
  toast(done.length === 1 ? `“${base(done[0])}” moved to trash.` : `${done.length} items moved to trash.`, {
    label: 'Undo',
    async run() {
      for (const path of done) {
        try { await post('/trash/restore', { path }); } catch (e) { toastError(e); }
      }
      after && after();
    },
  }, 8000);
}

export function download(entries) {
  const a = document.createElement('a');
  if (entries.length === 1 && entries[0].kind === 'file') {
    a.href = contentUrl(entries[0].path);
    a.download = entries[0].name;
  } else {
    a.href = zipUrl(entries.map((e) => e.path));
    a.download = '';
  }
  document.body.appendChild(a);
  a.click();
  a.remove();
}

function dropAccepts(e) {
  const types = e.dataTransfer ? [...e.dataTransfer.types] : [];
  return types.includes(DRAG_TYPE) || types.includes('Files');
}

/** Handlers that make an element a drop target for items and desktop files. */
function dropTarget(dest, setOver) {
  return {
    onDragOver(e) {
      if (!dropAccepts(e)) return;
      e.preventDefault();
      e.stopPropagation();
      e.dataTransfer.dropEffect = [...e.dataTransfer.types].includes(DRAG_TYPE) ? 'move' : 'copy';
      setOver(dest);
    },
    onDragLeave(e) { if (!e.relatedTarget || !e.currentTarget.contains(e.relatedTarget)) setOver(null); },
    async onDrop(e) {
      if (!dropAccepts(e)) return;
      e.preventDefault();
      e.stopPropagation();
      setOver(null);
      const raw = e.dataTransfer.getData(DRAG_TYPE);
      if (raw) await moveInto(JSON.parse(raw), dest);
      else enqueue(dest, await filesFromDrop(e.dataTransfer));
    },
  };
}

// The caller's role in each shared folder seen so far (by its mount path), so a
// viewer is not offered actions the server would refuse.
const mountRoles = new Map();
function roleAt(path) {
  let best = null;
  for (const [mount, role] of mountRoles) {
    if ((path === mount || path.startsWith(mount + '/')) && (!best || mount.length > best[0].length)) best = [mount, role];
  }
  return best ? best[1] : 'owner';
}

export function FilesView({ path, select, user }) {
  const [entries, setEntries] = useState(null);
  const [error, setError] = useState('');
  const [sort, setSort] = useState(() => ({ key: localStorage.getItem('cairn.sort') || 'name', dir: localStorage.getItem('cairn.dir') || 'asc' }));
  const [mode, setMode] = useState(() => localStorage.getItem('cairn.view') || 'list');
  const [selected, setSelected] = useState(() => new Set());
  const [focus, setFocus] = useState(0);
  const [anchor, setAnchor] = useState(0);
  const [dialog, setDialog] = useState(null);
  const [over, setOver] = useState(null);
  const [dragFiles, setDragFiles] = useState(false);
  const [menu, setMenu] = useState(null); // {x, y}
  const seq = useRef(0);

  const load = useCallback(async (keep) => {
    const my = ++seq.current;
    try {
      const es = await listAll(path, undefined, (first) => {
        if (my === seq.current && !keep) setEntries(first);
      });
      if (my !== seq.current) return;
      setEntries(es);
      setError('');
      if (!keep) { setSelected(new Set()); setFocus(0); setAnchor(0); }
      else setSelected((s) => new Set(es.filter((e) => s.has(e.path)).map((e) => e.path)));
    } catch (e) {
      if (my !== seq.current) return;
      setError(e.status === 404 ? 'This folder does not exist (any more).' : e.message);
      setEntries([]);
    }
  }, [path]);

  // Moving to another folder from the keyboard keeps the focus in the list.
  const listRef = useRef();
  const refocus = useRef(false);
  useEffect(() => {
    refocus.current = !!(listRef.current && listRef.current.contains(document.activeElement));
    setEntries(null);
    load(false);
  }, [path]);
  // Before the new rows are painted, so a key pressed as soon as they show reaches the
  // list.
  useLayoutEffect(() => {
    if (!entries || !refocus.current) return;
    refocus.current = false;
    if (listRef.current) listRef.current.focus();
    else document.getElementById('main').focus();
  }, [entries]);

  // Live: refresh when a change touches this folder (debounced a little, so a burst of
  // changes costs one listing).
  useEffect(() => {
    let t = null;
    const soon = () => { clearTimeout(t); t = setTimeout(() => load(true), 120); };
    const touches = (p) => parent(p) === path || p === path || path.startsWith(p + '/');
    const off1 = onChange(({ paths, all }) => { if (all || [...paths].some(touches)) soon(); });
    const off2 = onUploaded((dest) => { if (touches(dest)) soon(); });
    return () => { off1(); off2(); clearTimeout(t); };
  }, [path, load]);

  const sorted = useMemo(() => {
    if (!entries) return [];
    for (const e of entries) if (e.shared) mountRoles.set(e.path, e.shared.role);
    return sortEntries(entries, sort.key, sort.dir);
  }, [entries, sort]);
  const readOnly = roleAt(path) === 'viewer';
  // `#/files/DIR?select=NAME` (from a search result) selects that entry once listed.
  useEffect(() => {
    if (!select || !entries) return;
    const i = sorted.findIndex((e) => e.name === select);
    if (i < 0) return;
    setSelected(new Set([sorted[i].path]));
    setFocus(i);
    setAnchor(i);
    if (listRef.current) listRef.current.focus();
  }, [select, entries]);
  const selEntries = useMemo(() => sorted.filter((e) => selected.has(e.path)), [sorted, selected]);

  const setSortKey = (key) => {
    const dir = sort.key === key && sort.dir === 'asc' ? 'desc' : 'asc';
    localStorage.setItem('cairn.sort', key);
    localStorage.setItem('cairn.dir', dir);
    setSort({ key, dir });
  };
  const setView = (m) => { localStorage.setItem('cairn.view', m); setMode(m); };

  const open = (e) => {
    if (!e) return;
    if (e.kind === 'folder') go(filesHref(e.path));
    else if (['image', 'video', 'audio', 'pdf', 'text', 'code'].includes(fileType(e))) setDialog({ type: 'preview', entry: e });
    else download([e]);
  };

  const reload = () => load(true);
  const act = {
    newFolder: () => setDialog({ type: 'prompt', title: 'New folder', label: 'Folder name', action: 'Create', initial: 'Untitled folder',
      onSubmit: async (name) => { await post('/files/mkdir', { path: join(path, name) }); reload(); } }),
    rename: (e) => e && setDialog({ type: 'prompt', title: 'Rename', label: 'New name', action: 'Rename', initial: e.name, selectStem: e.kind === 'file',
      onSubmit: async (name) => { if (name !== e.name) { await post('/files/move', { from: e.path, to: join(path, name) }); reload(); } } }),
    move: (es) => es.length && setDialog({ type: 'picker', title: `Move ${es.length === 1 ? '“' + es[0].name + '”' : es.length + ' items'}`, action: 'Move here', exclude: es.map((x) => x.path),
      onPick: async (dest) => { await moveInto(es.map((x) => x.path), dest); reload(); } }),
    copy: (es) => es.length && setDialog({ type: 'picker', title: `Copy ${es.length === 1 ? '“' + es[0].name + '”' : es.length + ' items'}`, action: 'Copy here', exclude: es.filter((x) => x.kind === 'folder').map((x) => x.path),
      onPick: async (dest) => {
        for (const x of es) {
          try { await post('/files/copy', { from: x.path, to: join(dest, dest === path ? 'Copy of ' + x.name : x.name) }); } catch (err) { toastError(err); }
        }
        toast('Copied.');
        reload();
      } }),
    trash: (es) => es.length && trashPaths(es.map((x) => x.path), reload),
    download: (es) => es.length && download(es),
    versions: (e) => e && e.kind === 'file' && setDialog({ type: 'versions', entry: e }),
    share: (e) => e && e.kind === 'folder' && setDialog({ type: 'share', entry: e }),
    link: (e) => e && setDialog({ type: 'link', entry: e }),
  };

  // The context menu: right click, the Menu key or Shift+F10, on the selection.
  const openMenu = (i, x, y) => {
    const e = sorted[i];
    if (!e) return;
    let sel = selEntries;
    if (!selected.has(e.path)) {
      setSelected(new Set([e.path]));
      setAnchor(i);
      sel = [e];
    }
    setFocus(i);
    const one = sel.length === 1 ? sel[0] : null;
    const items = [];
    if (one) items.push({ label: 'Open', run: () => open(one) });
    items.push({ label: sel.length > 1 || (one && one.kind === 'folder') ? 'Download as zip' : 'Download', run: () => act.download(sel) });
    if (one && !readOnly) items.push({ label: 'Rename', run: () => act.rename(one) });
    if (!readOnly) items.push({ label: 'Move to…', run: () => act.move(sel) });
    items.push({ label: 'Copy to…', run: () => act.copy(sel) });
    if (one && one.kind === 'folder') items.push({ label: 'Share…', run: () => act.share(one) });
    if (one) items.push({ label: 'Get link…', run: () => act.link(one) });
    if (one && one.kind === 'file') items.push({ label: 'Versions', run: () => act.versions(one) });
    if (!readOnly) items.push({ label: 'Move to trash', danger: true, run: () => act.trash(sel) });
    setMenu({ x, y, items });
  };
  const menuAtFocus = () => {
    const el = document.getElementById('row-' + focus);
    const r = el ? el.getBoundingClientRect() : { left: 100, bottom: 100 };
    openMenu(focus, r.left + 40, r.bottom);
  };

  // Selection by mouse.
  const clickRow = (i, ev) => {
    const e = sorted[i];
    if (ev.shiftKey) {
      const [a, b] = [Math.min(anchor, i), Math.max(anchor, i)];
      const s = ev.ctrlKey || ev.metaKey ? new Set(selected) : new Set();
      for (let k = a; k <= b; k++) s.add(sorted[k].path);
      setSelected(s);
    } else if (ev.ctrlKey || ev.metaKey) {
      const s = new Set(selected);
      s.has(e.path) ? s.delete(e.path) : s.add(e.path);
      setSelected(s);
      setAnchor(i);
    } else if (touch.matches && selected.size === 0) {
      // On a phone a tap opens, as in other file apps; a long press selects.
      open(e);
    } else {
      setSelected(new Set([e.path]));
      setAnchor(i);
    }
    setFocus(i);
  };

  const cols = useRef(1);
  const onKey = (ev) => {
    if (!sorted.length || dialog) return;
    const n = sorted.length;
    const step = mode === 'grid' ? cols.current : 1;
    const page = Math.max(1, Math.floor((listRef.current ? listRef.current.clientHeight : 400) / (mode === 'grid' ? CELL : ROW))) * step;
    let to = null;
    switch (ev.key) {
      case 'ArrowDown': to = Math.min(n - 1, focus + step); break;
      case 'ArrowUp': to = Math.max(0, focus - step); break;
      case 'ArrowRight': if (mode === 'grid') to = Math.min(n - 1, focus + 1); break;
      case 'ArrowLeft': if (mode === 'grid') to = Math.max(0, focus - 1); break;
      case 'PageDown': to = Math.min(n - 1, focus + page); break;
      case 'PageUp': to = Math.max(0, focus - page); break;
      case 'Home': to = 0; break;
      case 'End': to = n - 1; break;
      case 'Enter': ev.preventDefault(); open(sorted[focus]); return;
      case ' ': {
        ev.preventDefault();
        const s = new Set(selected);
        const p = sorted[focus].path;
        s.has(p) ? s.delete(p) : s.add(p);
        setSelected(s);
        setAnchor(focus);
        return;
      }
      case 'Delete': ev.preventDefault(); if (!readOnly) act.trash(selEntries.length ? selEntries : [sorted[focus]]); return;
      case 'F2': ev.preventDefault(); if (!readOnly) act.rename(selEntries.length === 1 ? selEntries[0] : sorted[focus]); return;
      case 'Escape': setSelected(new Set()); return;
      case 'ContextMenu': ev.preventDefault(); menuAtFocus(); return;
      case 'F10': if (ev.shiftKey) { ev.preventDefault(); menuAtFocus(); } return;
      case 'Backspace': if (path !== '/') { ev.preventDefault(); go(filesHref(parent(path))); } return;
      default:
        if ((ev.key === 'a' || ev.key === 'A') && (ev.ctrlKey || ev.metaKey)) {
          ev.preventDefault();
          setSelected(new Set(sorted.map((e) => e.path)));
        }
        return;
    }
    if (to === null) return;
    ev.preventDefault();
    setFocus(to);
    if (ev.shiftKey) {
      const [a, b] = [Math.min(anchor, to), Math.max(anchor, to)];
      const s = new Set();
      for (let k = a; k <= b; k++) s.add(sorted[k].path);
      setSelected(s);
    } else if (!(ev.ctrlKey || ev.metaKey)) {
      setSelected(new Set([sorted[to].path]));
      setAnchor(to);
    }
  };

  const dragStart = (i, ev) => {
    const e = sorted[i];
    let paths = [e.path];
    if (selected.has(e.path)) paths = selEntries.map((x) => x.path);
    else setSelected(new Set([e.path]));
    ev.dataTransfer.setData(DRAG_TYPE, JSON.stringify(paths));
    ev.dataTransfer.setData('text/plain', paths.map(base).join('\n'));
    ev.dataTransfer.effectAllowed = 'copyMove';
  };

  // The whole view takes desktop files dropped on it (into this folder).
  const viewDrop = {
    onDragOver(e) {
      if (![...e.dataTransfer.types].includes('Files')) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
      setDragFiles(true);
    },
    onDragLeave(e) { if (!e.relatedTarget || !e.currentTarget.contains(e.relatedTarget)) setDragFiles(false); },
    async onDrop(e) {
      setDragFiles(false);
      if (![...e.dataTransfer.types].includes('Files')) return;
      e.preventDefault();
      enqueue(path, await filesFromDrop(e.dataTransfer));
    },
  };

  const sel1 = selEntries.length === 1 ? selEntries[0] : null;
  const sortLabel = (key) => (sort.key === key ? (sort.dir === 'asc' ? 'ascending' : 'descending') : 'none');
  const fileInput = useRef();
  const folderInput = useRef();

  return (
    <section class={'files' + (dragFiles ? ' drag-files' : '')} aria-label="Files" {...viewDrop}>
      <div class="toolbar">
        <nav class="crumbs" aria-label="Breadcrumbs">
          <ol>
            <li><a href={filesHref('/')} class={over === '/' ? 'drop-over' : ''} {...dropTarget('/', setOver)} aria-current={path === '/' ? 'page' : undefined}>My files</a></li>
            {segments(path).map((s, i, a) => {
              const p = '/' + a.slice(0, i + 1).join('/');
              return <li key={p}><a href={filesHref(p)} class={over === p ? 'drop-over' : ''} {...dropTarget(p, setOver)} aria-current={p === path ? 'page' : undefined}>{s}</a></li>;
            })}
          </ol>
        </nav>
        <div class="actions" role="toolbar" aria-label="Actions">
          {selEntries.length === 0 && !readOnly && <>
            <button type="button" onClick={act.newFolder}><Icon name="plus" /> <span class="label">New folder</span></button>
            <button type="button" onClick={() => fileInput.current.click()}><Icon name="up" /> <span class="label">Upload files</span></button>
            <button type="button" onClick={() => folderInput.current.click()}><Icon name="folder" /> <span class="label">Upload folder</span></button>
          </>}
          {selEntries.length > 0 && <>
            <span class="sel-count" aria-live="polite">{selEntries.length} selected</span>
            <button type="button" onClick={() => act.download(selEntries)}><Icon name="download" /> <span class="label">Download</span></button>
            {sel1 && !readOnly && <button type="button" onClick={() => act.rename(sel1)}>Rename</button>}
            {!readOnly && <button type="button" onClick={() => act.move(selEntries)}>Move</button>}
            <button type="button" onClick={() => act.copy(selEntries)}>Copy</button>
            {sel1 && sel1.kind === 'folder' && <button type="button" onClick={() => act.share(sel1)}>Share</button>}
            {sel1 && <button type="button" onClick={() => act.link(sel1)}><Icon name="link" /> <span class="label">Link</span></button>}
            {sel1 && sel1.kind === 'file' && <button type="button" onClick={() => act.versions(sel1)}>Versions</button>}
            {!readOnly && <button type="button" onClick={() => act.trash(selEntries)}><Icon name="trash" /> <span class="label">Delete</span></button>}
            {readOnly && <span class="badge">view only</span>}
          </>}
          <span class="spacer" />
          <button type="button" class="icon-btn" onClick={() => setView(mode === 'list' ? 'grid' : 'list')} aria-label={mode === 'list' ? 'Grid view' : 'List view'} title={mode === 'list' ? 'Grid view' : 'List view'}>
            <Icon name={mode === 'list' ? 'grid' : 'list'} />
          </button>
        </div>
        <input ref={fileInput} type="file" multiple hidden data-testid="file-input" onChange={(e) => { enqueue(path, filesFromInput(e.currentTarget)); e.currentTarget.value = ''; }} />
        <input ref={folderInput} type="file" multiple hidden webkitdirectory={true} data-testid="folder-input" onChange={(e) => { enqueue(path, filesFromInput(e.currentTarget)); e.currentTarget.value = ''; }} />
      </div>
      {error && <p class="error banner" role="alert">{error}</p>}
      {entries === null ? <p class="muted pad" role="status">Loading…</p> : sorted.length === 0 && !error ? (
        <div class="empty" data-testid="empty">
          <Icon name="folder" size={64} />
          <p>This folder is empty.</p>
          <p class="muted">Drop files here or use “Upload files”.</p>
        </div>
      ) : mode === 'list' ? (
        <VirtualList
          listRef={listRef} sorted={sorted} selected={selected} focus={focus} onKey={onKey} clickRow={clickRow}
          open={open} openMenu={openMenu} dragStart={dragStart} over={over} setOver={setOver} sort={sort} setSortKey={setSortKey} sortLabel={sortLabel}
        />
      ) : (
        <VirtualGrid
          listRef={listRef} cols={cols} sorted={sorted} selected={selected} focus={focus} onKey={onKey} clickRow={clickRow}
          open={open} openMenu={openMenu} dragStart={dragStart} over={over} setOver={setOver}
        />
      )}
      {menu && <Menu {...menu} label="Actions" onClose={() => setMenu(null)} />}
      {dialog && dialog.type === 'prompt' && <PromptDialog {...dialog} onClose={() => setDialog(null)} />}
      {dialog && dialog.type === 'picker' && <FolderPicker {...dialog} start={path} onClose={() => setDialog(null)} />}
      {dialog && dialog.type === 'versions' && <VersionsDialog entry={dialog.entry} onClose={() => setDialog(null)} onRestored={reload} />}
      {dialog && dialog.type === 'share' && <ShareDialog entry={dialog.entry} onClose={() => setDialog(null)} />}
      {dialog && dialog.type === 'link' && <LinkDialog entry={dialog.entry} onClose={() => setDialog(null)} />}
      {dialog && dialog.type === 'preview' && (() => {
        const files = sorted.filter((x) => x.kind === 'file' && ['image', 'video', 'audio', 'pdf', 'text', 'code'].includes(fileType(x)));
        const i = files.findIndex((x) => x.path === dialog.entry.path);
        return <PreviewDialog entry={dialog.entry} onClose={() => setDialog(null)}
          onPrev={i > 0 ? () => setDialog({ type: 'preview', entry: files[i - 1] }) : null}
          onNext={i >= 0 && i < files.length - 1 ? () => setDialog({ type: 'preview', entry: files[i + 1] }) : null} />;
      })()}
    </section>
  );
}

/** Tracks a scroll container's height and scroll position (one update per frame). */
function useViewport(ref) {
  const [vp, setVp] = useState({ top: 0, height: 600, width: 800 });
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    let frame = 0;
    const read = () => { frame = 0; setVp({ top: el.scrollTop, height: el.clientHeight, width: el.clientWidth }); };
    const onScroll = () => { if (!frame) frame = requestAnimationFrame(read); };
    const ro = new ResizeObserver(onScroll);
    ro.observe(el);
    el.addEventListener('scroll', onScroll, { passive: true });
    read();
    return () => { ro.disconnect(); el.removeEventListener('scroll', onScroll); cancelAnimationFrame(frame); };
  }, [ref.current]);
  return vp;
}

/** Scrolls the row at `top` (below a sticky header `head` pixels tall) into view. */
function scrollIntoView(el, top, h, head = 0) {
  if (!el) return;
  if (top < el.scrollTop) el.scrollTop = top;
  else if (top + head + h > el.scrollTop + el.clientHeight) el.scrollTop = top + head + h - el.clientHeight;
}

function Shared({ e }) {
  if (!e.shared) return null;
  return <span class="badge" title={`Shared by ${e.shared.owner}; you are ${e.shared.role}`}>{e.shared.role === 'owner' ? 'shared' : `${e.shared.owner} · ${e.shared.role}`}</span>;
}

function VirtualList({ listRef, sorted, selected, focus, onKey, clickRow, open, openMenu, dragStart, over, setOver, setSortKey, sortLabel }) {
  const vp = useViewport(listRef);
  useEffect(() => scrollIntoView(listRef.current, focus * ROW, ROW, ROW), [focus]);
  const first = Math.max(0, Math.floor((vp.top - ROW) / ROW) - 8);
  const last = Math.min(sorted.length, Math.ceil((vp.top + vp.height) / ROW) + 8);
  const rows = [];
  for (let i = first; i < last; i++) {
    const e = sorted[i];
    const t = fileType(e);
    const isSel = selected.has(e.path);
    const drop = e.kind === 'folder' ? dropTarget(e.path, setOver) : {};
    rows.push(
      <div key={e.path} id={'row-' + i} role="row" aria-rowindex={i + 2} aria-selected={isSel ? 'true' : 'false'}
        class={'row' + (isSel ? ' selected' : '') + (i === focus ? ' focused' : '') + (over === e.path ? ' drop-over' : '')}
        style={{ transform: `translateY(${i * ROW}px)` }}
        draggable onDragStart={(ev) => dragStart(i, ev)}
        onClick={(ev) => clickRow(i, ev)} onDblClick={() => open(e)} onContextMenu={(ev) => { ev.preventDefault(); if (touch.matches) clickRow(i, { ctrlKey: true }); else openMenu(i, ev.clientX, ev.clientY); }} data-path={e.path} data-kind={e.kind} {...drop}>
        <div role="gridcell" class="c-name"><Icon name={t} /><span class="name">{e.name}</span><Shared e={e} /></div>
        <div role="gridcell" class="c-size">{e.kind === 'file' ? size(e.size) : '—'}</div>
        <div role="gridcell" class="c-date">{date(e.modified_at)}</div>
      </div>,
    );
  }
  return (
    <div class="list" role="grid" aria-label="Folder contents" aria-rowcount={sorted.length + 1} aria-multiselectable="true"
      ref={listRef} tabIndex={0} onKeyDown={onKey} aria-activedescendant={sorted.length ? 'row-' + focus : undefined} data-testid="list">
      <div role="rowgroup" class="list-head">
        <div role="row" aria-rowindex={1} class="row head">
          <div role="columnheader" class="c-name" aria-sort={sortLabel('name')}><button type="button" onClick={() => setSortKey('name')}>Name</button></div>
          <div role="columnheader" class="c-size" aria-sort={sortLabel('size')}><button type="button" onClick={() => setSortKey('size')}>Size</button></div>
          <div role="columnheader" class="c-date" aria-sort={sortLabel('date')}><button type="button" onClick={() => setSortKey('date')}>Modified</button></div>
        </div>
      </div>
      <div role="rowgroup" class="list-inner" style={{ height: `${sorted.length * ROW}px` }}>{rows}</div>
    </div>
  );
}

function VirtualGrid({ listRef, cols, sorted, selected, focus, onKey, clickRow, open, openMenu, dragStart, over, setOver }) {
  const vp = useViewport(listRef);
  const n = Math.max(1, Math.floor((vp.width - 8) / 170));
  cols.current = n;
  const rowsTotal = Math.ceil(sorted.length / n);
  useEffect(() => scrollIntoView(listRef.current, Math.floor(focus / n) * CELL, CELL), [focus]);
  const first = Math.max(0, Math.floor(vp.top / CELL) - 2);
  const last = Math.min(rowsTotal, Math.ceil((vp.top + vp.height) / CELL) + 2);
  const w = (vp.width - 8) / n;
  const cells = [];
  for (let r = first; r < last; r++) {
    for (let c = 0; c < n; c++) {
      const i = r * n + c;
      if (i >= sorted.length) break;
      const e = sorted[i];
      const t = fileType(e);
      const isSel = selected.has(e.path);
      const drop = e.kind === 'folder' ? dropTarget(e.path, setOver) : {};
      cells.push(
        <div key={e.path} id={'row-' + i} role="option" aria-selected={isSel ? 'true' : 'false'}
          class={'cell' + (isSel ? ' selected' : '') + (i === focus ? ' focused' : '') + (over === e.path ? ' drop-over' : '')}
          style={{ transform: `translate(${c * w}px, ${r * CELL}px)`, width: `${w - 8}px` }}
          draggable onDragStart={(ev) => dragStart(i, ev)} onClick={(ev) => clickRow(i, ev)} onDblClick={() => open(e)} onContextMenu={(ev) => { ev.preventDefault(); openMenu(i, ev.clientX, ev.clientY); }} data-path={e.path} {...drop}>
          <div class="thumb">{t === 'image' ? <Thumb e={e} /> : <Icon name={t} size={56} />}</div>
          <div class="cell-name"><span class="name">{e.name}</span></div>
        </div>,
      );
    }
  }
  return (
    <div class="grid-view" role="listbox" aria-label="Folder contents" aria-multiselectable="true" ref={listRef} tabIndex={0} onKeyDown={onKey}
      aria-activedescendant={sorted.length ? 'row-' + focus : undefined} data-testid="list">
      <div class="list-inner" style={{ height: `${rowsTotal * CELL}px` }}>{cells}</div>
    </div>
  );
}

function Thumb({ e }) {
  const [failed, setFailed] = useState(false);
  if (failed) return <Icon name="image" size={56} />;
  return <img src={thumbUrl(e.path, 256)} alt="" loading="lazy" decoding="async" onError={() => setFailed(true)} />;
}
