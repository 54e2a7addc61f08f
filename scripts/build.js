#!/usr/bin/env node
/**
 * The build: each TypeScript source compiled to JavaScript on its own (esbuild, the transpiler tsx ran
 * the sources with, so the compiled program behaves as the source did), every other file copied; run
 * as a script (`npm run build`, and `prepare` on `npm ci` and `npm pack`) it starts from empty folders
 * and adds tsc's declaration files, which the published packages carry.
 *
 * Each output folder keeps a manifest of the sources it was built from: path, size and modification
 * time as stat gave them before the file was read. `ensureBuilt` compares it with the sources as they
 * are and recompiles what differs (an edit, a new file, a file deleted or restored from elsewhere): in a
 * checkout bin/vla.js calls it on every start, a few milliseconds when nothing changed, so no command,
 * test or benchmark ever runs a build older than its sources.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MANIFEST = '.build-manifest.json';

/** Source folder, output folder and the tsconfig that emits its declarations; the client first, as src/ imports it. */
const TARGETS = [
  { src: 'packages/client/src', out: 'packages/client/dist', tsconfig: 'packages/client/tsconfig.json' },
  { src: 'src', out: 'dist', tsconfig: 'tsconfig.build.json' },
];

/** Every file under `dir`, relative path → "size:mtime"; hidden files (an editor's temporary copies) are not sources. */
function listSources(dir, base = dir, found = new Map()) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) listSources(file, base, found);
    else if (entry.isFile()) {
      const s = statSync(file);
      found.set(path.relative(base, file), `${s.size}:${s.mtimeMs}`);
    }
  }
  return found;
}

function readManifest(out) {
  try {
    return JSON.parse(readFileSync(path.join(out, MANIFEST), 'utf8'));
  } catch {
    return {};
  }
}

/** Written beside and renamed into place, so a process reading the build never sees half a file. */
function writeAtomic(file, contents) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

const outputOf = (rel) => (rel.endsWith('.ts') && !rel.endsWith('.d.ts') ? rel.replace(/\.ts$/, '.js') : rel);

async function buildTarget({ src, out }) {
  const srcDir = path.join(ROOT, src);
  const outDir = path.join(ROOT, out);
  const sources = listSources(srcDir);
  const built = readManifest(outDir);
  const changed = [...sources].filter(([rel, stamp]) => built[rel] !== stamp).map(([rel]) => rel);
  const removed = Object.keys(built).filter((rel) => !sources.has(rel));
  if (changed.length === 0 && removed.length === 0) return 0;

  for (const rel of removed) rmSync(path.join(outDir, outputOf(rel)), { force: true });
  const ts = changed.filter((rel) => outputOf(rel) !== rel);
  if (ts.length > 0) {
    const esbuild = await import('esbuild');
    const result = await esbuild.build({
      entryPoints: ts.map((rel) => path.join(srcDir, rel)),
      outbase: srcDir,
      outdir: outDir,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      tsconfig: path.join(ROOT, 'tsconfig.json'),
      write: false,
      logLevel: 'silent',
    });
    for (const file of result.outputFiles) writeAtomic(file.path, file.contents);
  }
  for (const rel of changed.filter((r) => outputOf(r) === r)) {
    writeAtomic(path.join(outDir, rel), readFileSync(path.join(srcDir, rel)));
  }
  writeAtomic(path.join(outDir, MANIFEST), JSON.stringify(Object.fromEntries(sources)));
  return changed.length + removed.length;
}

/** Brings every output folder up to date with its sources; returns how many files changed. */
export async function ensureBuilt() {
  let n = 0;
  for (const target of TARGETS) n += await buildTarget(target);
  return n;
}

/** From empty output folders: the JavaScript, then the declarations. */
async function fullBuild() {
  for (const target of TARGETS) rmSync(path.join(ROOT, target.out), { recursive: true, force: true });
  await ensureBuilt();
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  for (const target of TARGETS) {
    const run = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, target.tsconfig)], {
      stdio: 'inherit',
    });
    if (run.status !== 0)
      throw new Error(`build: declarations of ${target.src}: tsc exited with ${run.status}`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await fullBuild();
