// Routing by the URL hash, so the server serves only `/` and `/assets/*`.
import { useEffect, useState } from 'preact/hooks';

export function parseHash(hash = location.hash) {
  const h = hash.replace(/^#/, '') || '/files/';
  const [pathPart, qs] = h.split('?');
  const params = new URLSearchParams(qs || '');
  const m = pathPart.match(/^\/([a-z]+)(\/.*)?$/);
  const view = m ? m[1] : 'files';
  let path = '/';
  if (view === 'files' && m && m[2]) {
    const segs = m[2].split('/').filter(Boolean).map((s) => {
      try { return decodeURIComponent(s); } catch { return s; }
    });
    path = '/' + segs.join('/');
  }
  return { view, path, params };
}

export const filesHref = (path) =>
  '#/files' + (path === '/' ? '/' : path.split('/').map(encodeURIComponent).join('/'));

export function go(href) {
  if (location.hash !== href) location.hash = href;
}

export function useRoute() {
  const [r, setR] = useState(parseHash());
  useEffect(() => {
    const on = () => setR(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return r;
}
