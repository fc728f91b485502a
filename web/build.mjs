// Builds dist/ from src/: one JS bundle and one CSS file, content-hashed, plus the web
// app manifest and its icons. Nothing here depends on the clock or the file order on
// disk, so the same sources and lockfile give byte-identical output.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { gzipSync, deflateSync } from 'node:zlib';
import { join } from 'node:path';

const dist = 'dist';
const assets = join(dist, 'assets');
rmSync(dist, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const hashName = (base, ext, data) =>
  `${base}-${createHash('sha256').update(data).digest('hex').slice(0, 12)}.${ext}`;

const out = await build({
  entryPoints: ['src/main.jsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  charset: 'utf8',
  write: false,
  outdir: 'out',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
const js = out.outputFiles.find((f) => f.path.endsWith('.js')).contents;
const css = (await build({
  entryPoints: ['src/style.css'],
  bundle: true,
  minify: true,
  write: false,
  outdir: 'out',
  logLevel: 'warning',
})).outputFiles[0].contents;

const files = new Map();
const put = (base, ext, data) => {
  const name = hashName(base, ext, data);
  files.set(name, data);
  return name;
};
const jsName = put('app', 'js', js);
const cssName = put('app', 'css', css);

// Icons: a cairn (three stacked stones) drawn as SVG, and the same shape rasterized to
// PNG by a tiny encoder, since installability wants PNG icons of 192 and 512 pixels.
const svg = readFileSync('src/icon.svg');
const svgName = put('icon', 'svg', svg);
const pngNames = [192, 512].map((size) => [size, put(`icon-${size}`, 'png', iconPng(size))]);

const manifest = Buffer.from(JSON.stringify({
  name: 'Cairn',
  short_name: 'Cairn',
  start_url: '/',
  scope: '/',
  display: 'standalone',
  background_color: '#1a73e8',
  theme_color: '#1a73e8',
  icons: [
    { src: `/assets/${svgName}`, sizes: 'any', type: 'image/svg+xml' },
    ...pngNames.map(([s, n]) => ({ src: `/assets/${n}`, sizes: `${s}x${s}`, type: 'image/png', purpose: 'any maskable' })),
  ],
}, null, 1) + '\n');
const manifestName = put('manifest', 'webmanifest', manifest);

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="theme-color" content="#1a73e8">
<title>Cairn</title>
<link rel="icon" href="/assets/${svgName}" type="image/svg+xml">
<link rel="apple-touch-icon" href="/assets/${pngNames[0][1]}">
<link rel="manifest" href="/assets/${manifestName}">
<link rel="stylesheet" href="/assets/${cssName}">
<script type="module" src="/assets/${jsName}"></script>
</head>
<body>
<div id="app"><noscript>Cairn's web interface needs JavaScript.</noscript></div>
</body>
</html>
`;
writeFileSync(join(dist, 'index.html'), html);
for (const name of [...files.keys()].sort()) writeFileSync(join(assets, name), files.get(name));

const gz = (b) => gzipSync(b, { level: 9 }).length;
const total = gz(js) + gz(css);
console.log(`dist: ${readdirSync(assets).sort().join(' ')}`);
console.log(`shipped JS + CSS: ${js.length} + ${css.length} bytes; gzip -9: ${(total / 1024).toFixed(1)} KiB (target <= 150 KiB)`);
if (total > 150 * 1024) {
  console.error('over the 150 KiB budget');
  process.exit(1);
}

function iconPng(size) {
  // RGBA pixels: a blue rounded square with three white stones.
  const px = Buffer.alloc(size * size * 4);
  const r = size * 0.2;
  const stones = [
    [0.5, 0.74, 0.30, 0.11],
    [0.5, 0.52, 0.22, 0.09],
    [0.5, 0.33, 0.14, 0.075],
  ];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 4;
      const cx = Math.min(Math.max(x, r), size - r), cy = Math.min(Math.max(y, r), size - r);
      const inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
      if (!inside) continue;
      let white = false;
      for (const [sx, sy, rx, ry] of stones) {
        if (((x / size - sx) / rx) ** 2 + ((y / size - sy) / ry) ** 2 <= 1) white = true;
      }
      px[i] = white ? 255 : 0x1a; px[i + 1] = white ? 255 : 0x73; px[i + 2] = white ? 255 : 0xe8; px[i + 3] = 255;
    }
  }
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) px.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}
