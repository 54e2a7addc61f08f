/**
 * The house's layering (DESIGN.md §2, refined): every import in src/ points down this list, and no
 * files import each other in a circle. A folder is a layer; the files at src/'s root (thread start-up) sit with the lowest modules that use them.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');

/**
 * Higher imports lower. sim sits above client: a simulated robot reaches its policy as any robot does,
 * through the client. data sits above transforms and model: the loader applies the transforms and makes
 * the model's batches.
 */
const LAYER: Record<string, number> = {
  cli: 8,
  jobs: 7,
  train: 6,
  serving: 6,
  sim: 6,
  client: 5,
  data: 4,
  model: 3,
  transforms: 2,
  protocol: 2,
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

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)'(\.{1,2}\/[^']+)'/g)].map((m) =>
    path.resolve(path.dirname(file), m[1]!).replace(/\.js$/, '.ts'),
  );
}

const layerOf = (file: string) => {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length === 1 ? '' : rel[0]!;
};

describe('layering of src/', () => {
  const files = sources(SRC);

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
