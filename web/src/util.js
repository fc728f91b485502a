// Small helpers: paths, sizes, dates, file types.
export const join = (dir, name) => (dir === '/' ? '' : dir) + '/' + name;
export const parent = (p) => {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
};
export const base = (p) => p.slice(p.lastIndexOf('/') + 1);
export const segments = (p) => p.split('/').filter(Boolean);

export function size(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  const u = ['KB', 'MB', 'GB', 'TB', 'PB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
export const date = (ms) => (ms ? dateFmt.format(new Date(ms)) : '');

export const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

const TYPES = {
  image: 'jpg jpeg png gif webp bmp svg avif heic tif tiff ico',
  video: 'mp4 webm mkv mov avi m4v ogv',
  audio: 'mp3 wav ogg oga flac m4a aac opus',
  pdf: 'pdf',
  archive: 'zip tar gz tgz bz2 xz 7z rar zst',
  code: 'js mjs ts tsx jsx rs go py rb java c h cpp hpp cs php sh bash zsh css scss html htm xml json yaml yml toml ini sql kt swift lua pl r',
  text: 'txt md markdown log csv tsv rst conf cfg env',
  doc: 'doc docx odt rtf pages',
  sheet: 'xls xlsx ods numbers',
  slides: 'ppt pptx odp key',
};
const byExt = {};
for (const [t, exts] of Object.entries(TYPES)) for (const e of exts.split(' ')) byExt[e] = t;

export function fileType(entry) {
  if (entry.kind === 'folder') return entry.shared ? 'shared' : 'folder';
  const i = entry.name.lastIndexOf('.');
  return (i > 0 && byExt[entry.name.slice(i + 1).toLowerCase()]) || 'file';
}

export const previewable = (t) => ['image', 'video', 'audio', 'pdf', 'code', 'text'].includes(t);
