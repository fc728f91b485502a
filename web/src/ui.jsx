// Shared pieces: icons, the dialog (focus trapped, returned on close), buttons.
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';

const P = {
  folder: 'M3 6a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z',
  shared: 'M3 6a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2zM12 11.5a2 2 0 1 0 0-.01zM8.5 17c.5-2 2-3 3.5-3s3 1 3.5 3z',
  file: 'M6 2h8l5 5v13a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V8h4.5',
  image: 'M4 4h16v16H4zM8 10a1.5 1.5 0 1 0 0-.01M5 19l5-6 3 4 2-2 4 4',
  video: 'M4 5h16v14H4zM10 9v6l5-3z',
  audio: 'M9 18V6l10-2v12M9 18a3 3 0 1 1-3-3 3 3 0 0 1 3 3zm10-2a3 3 0 1 1-3-3 3 3 0 0 1 3 3z',
  pdf: 'M6 2h8l5 5v13a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zM8 13h8M8 17h5',
  archive: 'M6 2h12v20H6zM11 4h2v2h-2zm0 4h2v2h-2zm0 4h2v3h-2z',
  code: 'M9 8l-4 4 4 4M15 8l4 4-4 4',
  text: 'M6 2h8l5 5v13a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zM8 10h8M8 14h8M8 18h6',
  doc: 'M6 2h8l5 5v13a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zM8 10h8M8 14h8',
  sheet: 'M4 4h16v16H4zM4 10h16M4 15h16M10 4v16',
  slides: 'M3 4h18v12H3zM12 16v4M8 20h8',
  up: 'M12 19V5M6 11l6-6 6 6',
  trash: 'M5 7h14M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
  link: 'M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1',
  user: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21c1-4 4-6 8-6s7 2 8 6',
  admin: 'M12 2l8 4v6c0 5-3.5 9-8 10-4.5-1-8-5-8-10V6z',
  search: 'M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14zM21 21l-5-5',
  plus: 'M12 5v14M5 12h14',
  grid: 'M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 13h7v7h-7z',
  list: 'M4 6h16M4 12h16M4 18h16',
  close: 'M6 6l12 12M18 6L6 18',
  download: 'M12 4v12M6 10l6 6 6-6M4 20h16',
  home: 'M3 11l9-8 9 8v10H3z',
  menu: 'M4 6h16M4 12h16M4 18h16',
};

export function Icon({ name, label, size = 20 }) {
  return (
    <svg class={'icon icon-' + name} width={size} height={size} viewBox="0 0 24 24" aria-hidden={label ? undefined : 'true'} role={label ? 'img' : undefined} aria-label={label}>
      <path d={P[name] || P.file} />
    </svg>
  );
}

const FOCUSABLE = 'a[href],button:not([disabled]),input:not([disabled]),select:not([disabled]),textarea:not([disabled]),[tabindex]:not([tabindex="-1"])';

/** A modal dialog: labelled, focus moved in and trapped, Escape closes, focus returned. */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef();
  const titleId = useRef('dlg-' + Math.random().toString(36).slice(2)).current;
  // A layout effect, so the focus is inside before any key typed next arrives.
  useLayoutEffect(() => {
    const before = document.activeElement;
    const el = ref.current;
    const first = el.querySelector('[autofocus]') || el.querySelector(FOCUSABLE);
    (first || el).focus();
    return () => {
      if (before && before.focus && document.contains(before)) before.focus();
    };
  }, []);
  const onKey = (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      onClose();
    } else if (e.key === 'Tab') {
      const f = [...ref.current.querySelectorAll(FOCUSABLE)].filter((x) => x.offsetParent !== null);
      if (!f.length) return;
      const a = f[0], z = f[f.length - 1];
      if (e.shiftKey && document.activeElement === a) { e.preventDefault(); z.focus(); }
      else if (!e.shiftKey && document.activeElement === z) { e.preventDefault(); a.focus(); }
    }
  };
  return (
    <div class="backdrop" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div class={'dialog' + (wide ? ' wide' : '')} role="dialog" aria-modal="true" aria-labelledby={titleId} ref={ref} tabIndex={-1} onKeyDown={onKey}>
        <div class="dialog-head">
          <h2 id={titleId}>{title}</h2>
          <button class="icon-btn" type="button" onClick={onClose} aria-label="Close"><Icon name="close" /></button>
        </div>
        {children}
      </div>
    </div>
  );
}

/** A context menu at (x, y): arrow keys move, Enter runs, Escape or a click outside closes. */
export function Menu({ x, y, items, onClose, label }) {
  const ref = useRef();
  useLayoutEffect(() => {
    const before = document.activeElement;
    const first = ref.current.querySelector('[role=menuitem]');
    if (first) first.focus();
    const away = (e) => { if (!ref.current.contains(e.target)) onClose(); };
    addEventListener('mousedown', away, true);
    return () => {
      removeEventListener('mousedown', away, true);
      if (before && before.focus && document.contains(before)) before.focus();
    };
  }, []);
  // Keep the menu inside the window.
  const style = { left: `${Math.max(4, Math.min(x, innerWidth - 220))}px`, top: `${Math.max(4, Math.min(y, innerHeight - items.length * 38 - 12))}px` };
  const onKey = (e) => {
    const all = [...ref.current.querySelectorAll('[role=menuitem]')];
    const i = all.indexOf(document.activeElement);
    if (e.key === 'ArrowDown') { e.preventDefault(); all[(i + 1) % all.length].focus(); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); all[(i - 1 + all.length) % all.length].focus(); }
    else if (e.key === 'Home') { e.preventDefault(); all[0].focus(); }
    else if (e.key === 'End') { e.preventDefault(); all[all.length - 1].focus(); }
    else if (e.key === 'Escape' || e.key === 'Tab') { e.preventDefault(); e.stopPropagation(); onClose(); }
  };
  return (
    <ul class="menu" role="menu" aria-label={label} ref={ref} style={style} onKeyDown={onKey}>
      {items.map((it) => (
        <li role="none" key={it.label}>
          <button type="button" role="menuitem" tabIndex={-1} class={it.danger ? 'danger' : ''} onClick={() => { onClose(); it.run(); }}>{it.label}</button>
        </li>
      ))}
    </ul>
  );
}
