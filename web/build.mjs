// Builds the web UI into dist/: esbuild bundles and minifies the app and its stylesheet under
// content-hashed names, the icon gets a content hash too, and index.html is written with the
// hashed paths. No plugins; the output is the same bytes for the same sources and lockfile.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, 'dist');
const assets = path.join(dist, 'assets');

await rm(dist, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ['src/app.js', 'src/style.css'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  platform: 'browser',
  entryNames: '[name]-[hash]',
  outdir: assets,
  metafile: true,
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
});

const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) outputs[meta.entryPoint] = `/assets/${path.basename(file)}`;
}

const icon = await readFile(path.join(root, 'src/icon.svg'));
const iconHash = createHash('sha256').update(icon).digest('hex').slice(0, 12);
const iconName = `icon-${iconHash}.svg`;
await writeFile(path.join(assets, iconName), icon);

const html = (await readFile(path.join(root, 'src/index.html'), 'utf8'))
  .replace('%APP_JS%', outputs['src/app.js'])
  .replace('%STYLE_CSS%', outputs['src/style.css'])
  .replace('%ICON%', `/assets/${iconName}`);
await writeFile(path.join(dist, 'index.html'), html);
console.log(`built ${outputs['src/app.js']}, ${outputs['src/style.css']}, /assets/${iconName}`);
