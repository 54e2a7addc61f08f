/**
 * The house's layering (DESIGN.md §2, refined): every import in src/ points down this list, and no
 * files import each other in a circle. A folder is a layer; the files at src/'s root (thread start-up) sit with the lowest modules that use them.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');
/** The robot-side client package: the wire codec and client, which serving and the simulator import. */
const CLIENT = path.resolve(import.meta.dirname, '../packages/client/src');
const CLIENT_PACKAGE = '@vla-orchestrator/client';

/**
 * Higher imports lower. sim sits above client: a simulated robot reaches its policy as any robot does,
 * through the client. data sits above transforms and model: the loader applies the transforms and makes
 * the model's batches.
 */
const LAYER: Record<string, number> = {
  cli: 8,
  // The library's entry point: re-exports from the layers below, as the CLI uses them.
  api: 8,
  // The web page over jobs, datasets, evaluations and servers: only the CLI starts it.
  dashboard: 7.5,
  jobs: 7,
  train: 6,
  serving: 6,
  sim: 6,
  client: 5,
  data: 4,
  model: 3,
  transforms: 2,
  protocol: 2,
  [CLIENT_PACKAGE]: 1,
  plot: 2,
  config: 1,
  backend: 1,
  '': 2,
};

/** Same-layer imports that are part of the design, with why. */
const ALLOWED_SIDEWAYS = new Set([
  // The backend reports a bad choice as a user error.
  'backend -> config',
]);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.(ts|js|mjs)$/.test(f) ? [p] : [];
  });
}

/** Every module a file imports: relative ones as paths, the client package as its source folder. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)'([^']+)'/g)].flatMap((m) => {
    const spec = m[1]!;
    if (spec === CLIENT_PACKAGE) return [path.join(CLIENT, 'index.ts')];
    return spec.startsWith('.') ? [path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts')] : [];
  });
}

/** Bare module names a file imports (npm packages and node: builtins). */
const packagesOf = (file: string) =>
  [...readFileSync(file, 'utf8').matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)'([^'.][^']*)'/g)].map((m) => m[1]!);

const layerOf = (file: string) => {
  if (!path.relative(CLIENT, file).startsWith('..')) return CLIENT_PACKAGE;
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length === 1 ? '' : rel[0]!;
};

describe('layering of src/', () => {
  const files = [...sources(SRC), ...sources(CLIENT)];

  it('the client package imports only itself, ws, msgpackr and node builtins (it is published alone)', () => {
    const outside = sources(CLIENT).flatMap((file) => [
      ...imports(file)
        .filter((t) => path.relative(CLIENT, t).startsWith('..'))
        .map((t) => `${path.basename(file)} -> ${t}`),
      ...packagesOf(file)
        .filter((p) => !['ws', 'msgpackr'].includes(p) && !p.startsWith('node:'))
        .map((p) => `${path.basename(file)} -> ${p}`),
    ]);
    expect(outside).toEqual([]);
  });

  it('every folder is placed in a layer', () => {
    expect(files.map(layerOf).filter((l) => !(l in LAYER))).toEqual([]);
  });

  it('every import points down the layers', () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = layerOf(file);
      for (const target of imports(file)) {
        const to = layerOf(target);
        if (to === from || LAYER[to]! < LAYER[from]!) continue;
        if (LAYER[to] === LAYER[from] && ALLOWED_SIDEWAYS.has(`${from} -> ${to}`)) continue;
        upward.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('no files import each other in a circle', () => {
    const graph = new Map(files.map((f) => [f, imports(f).filter((t) => files.includes(t))]));
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (f: string, trail: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        circles.push([...trail.slice(trail.indexOf(f)), f].map((p) => path.relative(SRC, p)).join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const t of graph.get(f)!) visit(t, [...trail, f]);
      state.set(f, 'done');
    };
    for (const f of files) visit(f, []);
    expect(circles).toEqual([]);
  });
});
