import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML, { type Document, LineCounter } from 'yaml';
import type { z } from 'zod';
import { describeValue, UserError } from './errors.js';
import { PACKAGE_ROOT } from './package-root.js';
import { RobotSpec } from './robot.js';
import { TrainConfig } from './schema.js';

export { PACKAGE_ROOT };

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonMap = { [k: string]: Json };

/** One YAML file as parsed, kept so errors can point at a line. */
interface Source {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
  data: JsonMap;
}

/** Folders searched for named configs and robots: the user's workspace first, then the package's own. */
export function searchDirs(kind: 'configs' | 'robots', cwd = process.cwd()): string[] {
  const dirs = [path.join(cwd, kind), path.join(PACKAGE_ROOT, kind)];
  return [...new Set(dirs.map((d) => path.resolve(d)))].filter((d) => existsSync(d));
}

export interface NamedFile {
  name: string;
  file: string;
  description: string;
}

export function listNamed(kind: 'configs' | 'robots', cwd = process.cwd()): NamedFile[] {
  const seen = new Map<string, NamedFile>();
  for (const dir of searchDirs(kind, cwd)) {
    for (const entry of readdirSync(dir).sort()) {
      if (!/\.ya?ml$/.test(entry)) continue;
      const name = entry.replace(/\.ya?ml$/, '');
      if (seen.has(name)) continue;
      const file = path.join(dir, entry);
      let description: string;
      try {
        const data = readYaml(file).data;
        description = typeof data.description === 'string' ? data.description : '';
      } catch (e) {
        description = `(unreadable: ${(e as Error).message})`;
      }
      seen.set(name, { name, file, description });
    }
  }
  return [...seen.values()];
}

/** A name (`pi0_aloha`) or a path to a YAML file. */
export function findNamed(kind: 'configs' | 'robots', nameOrPath: string, cwd = process.cwd()): string {
  if (/\.ya?ml$/.test(nameOrPath) || nameOrPath.includes(path.sep)) {
    const file = path.resolve(cwd, nameOrPath);
    if (!existsSync(file)) throw new UserError(`${nameOrPath}: no such file`);
    return file;
  }
  for (const dir of searchDirs(kind, cwd)) {
    for (const ext of ['.yaml', '.yml']) {
      const file = path.join(dir, nameOrPath + ext);
      if (existsSync(file)) return file;
    }
  }
  const known = listNamed(kind, cwd).map((n) => n.name);
  const singular = kind === 'configs' ? 'config' : 'robot';
  throw new UserError(
    `unknown ${singular} "${nameOrPath}": expected one of ${known.join(', ') || '(none found)'}, or a path to a YAML file`,
  );
}

function readYaml(file: string): Source {
  const lines = new LineCounter();
  const doc = YAML.parseDocument(readFileSync(file, 'utf8'), { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const pos = lines.linePos(err.pos[0]);
    throw new UserError(`${rel(file)}:${pos.line}: invalid YAML: ${err.message.split('\n')[0]}`);
  }
  const data = doc.toJS() ?? {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new UserError(`${rel(file)}: expected a map at the top level, got ${describeValue(data)}`);
  }
  return { file, doc, lines, data };
}

const rel = (file: string) => path.relative(process.cwd(), file) || file;
const isMap = (v: unknown): v is JsonMap => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Maps merge key by key; lists and scalars replace, as a child config overrides its parent. */
export function deepMerge(base: JsonMap, over: JsonMap): JsonMap {
  const out: JsonMap = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k];
    out[k] = isMap(prev) && isMap(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

/** `train.batch_size=16`: the value is read as YAML, so numbers, booleans, null and `[a, b]` work. */
export function parseOverride(text: string): { path: string[]; value: Json } {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UserError(`--set ${text}: expected KEY=VALUE such as train.batch_size=16`);
  const keyPath = text.slice(0, eq).trim().split('.');
  if (keyPath.some((k) => k === '')) throw new UserError(`--set ${text}: empty segment in key path`);
  let value: Json;
  try {
    value = YAML.parse(text.slice(eq + 1)) as Json;
  } catch (e) {
    throw new UserError(
      `--set ${text}: the value is not valid YAML (${(e as Error).message.split('\n')[0]})`,
    );
  }
  return { path: keyPath, value: value === undefined ? null : value };
}

function setIn(target: JsonMap, keyPath: string[], value: Json): void {
  let node: Json = target;
  for (const [i, key] of keyPath.entries()) {
    const last = i === keyPath.length - 1;
    if (Array.isArray(node)) {
      const idx = Number(key);
      if (!Number.isInteger(idx) || idx < 0 || idx >= node.length) {
        throw new UserError(
          `--set ${keyPath.join('.')}: expected an index 0..${node.length - 1} at "${key}", got ${key}`,
        );
      }
      if (last) node[idx] = value;
      else node = node[idx]!;
      continue;
    }
    if (!isMap(node)) {
      throw new UserError(
        `--set ${keyPath.join('.')}: ${keyPath.slice(0, i).join('.')} is ${describeValue(node)}, not a map`,
      );
    }
    if (last) node[key] = value;
    else {
      if (node[key] === undefined || node[key] === null) node[key] = {};
      node = node[key]!;
    }
  }
}

function getIn(data: unknown, keyPath: readonly PropertyKey[]): unknown {
  let node = data;
  for (const key of keyPath) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key as string];
  }
  return node;
}

/** The field names a (possibly wrapped) zod object schema accepts at keyPath. */
function fieldsAt(schema: z.ZodType, keyPath: readonly PropertyKey[]): string[] {
  let node = schema as unknown as { _zod: { def: Record<string, unknown> } };
  const unwrap = () => {
    for (;;) {
      const def = node._zod.def;
      if (def.innerType) node = def.innerType as typeof node;
      else if (def.type === 'pipe') node = def.in as typeof node;
      else return;
    }
  };
  for (const key of keyPath) {
    unwrap();
    const shape = node._zod.def.shape as Record<string, typeof node> | undefined;
    const element = node._zod.def.element as typeof node | undefined;
    const next = shape?.[key as string] ?? element;
    if (!next) return [];
    node = next;
  }
  unwrap();
  return Object.keys((node._zod.def.shape as object | undefined) ?? {});
}

/** What the schema wanted, in words, for one zod issue. */
function expectedText(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected === 'int' ? 'an integer' : issue.expected}`;
    case 'too_small':
      return `expected ${issue.origin === 'array' ? 'a list with length' : issue.origin === 'string' ? 'a string with length' : 'a value'} ${issue.inclusive ? '>=' : '>'} ${issue.minimum}`;
    case 'too_big':
      return `expected ${issue.origin === 'array' ? 'a list with length' : issue.origin === 'string' ? 'a string with length' : 'a value'} ${issue.inclusive ? '<=' : '<'} ${issue.maximum}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_union':
      return 'expected a value of one of the allowed forms';
    case 'invalid_format':
      return `expected ${issue.format}`;
    default:
      return issue.message.startsWith('expected') ? issue.message : `expected ${issue.message}`;
  }
}

/**
 * Validate raw data against a schema, turning the first problems into one clear error:
 * `configs/x.yaml:7: train.batch_size: expected an integer, got "sixteen" (string)`.
 */
export function validate<S extends z.ZodType>(
  schema: S,
  data: unknown,
  where: (keyPath: PropertyKey[]) => string,
): z.infer<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const lines = result.error.issues.slice(0, 5).map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const known = fieldsAt(schema, issue.path);
      return issue.keys
        .map((k) => {
          const keyPath = [...issue.path, k];
          return `${where(keyPath)}${keyPath.join('.')}: unknown field (known here: ${known.join(', ') || 'none'})`;
        })
        .join('\n');
    }
    const actual = getIn(data, issue.path);
    const shown =
      issue.code === 'custom' ? issue.message : `${expectedText(issue)}, got ${describeValue(actual)}`;
    return `${where(issue.path)}${issue.path.join('.') || '(top level)'}: ${shown}`;
  });
  const more =
    result.error.issues.length > 5 ? `\n(and ${result.error.issues.length - 5} more problems)` : '';
  throw new UserError(lines.join('\n') + more);
}

/** `file:line: ` of the deepest node on keyPath that some source defines. */
function locate(sources: Source[], keyPath: PropertyKey[]): string {
  for (let depth = keyPath.length; depth >= 0; depth--) {
    const prefix = keyPath.slice(0, depth);
    for (const src of sources) {
      if (getIn(src.data, prefix) === undefined) continue;
      const node = depth === 0 ? src.doc.contents : src.doc.getIn(prefix as unknown[], true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      const line = range ? `:${src.lines.linePos(range[0]).line}` : '';
      return `${rel(src.file)}${line}: `;
    }
  }
  return sources.length > 0 ? `${rel(sources[0]!.file)}: ` : '';
}

export interface Resolved {
  config: TrainConfig;
  /** Files that made it, the named one first, then what it extends. */
  files: string[];
}

/** Load a named config, follow `extends`, apply `--set` overrides, validate. */
export function resolveConfig(nameOrPath: string, overrides: string[] = [], cwd = process.cwd()): Resolved {
  const chain: Source[] = [];
  let next: string | undefined = nameOrPath;
  while (next !== undefined) {
    const file = findNamed('configs', next, cwd);
    if (chain.some((s) => s.file === file)) {
      throw new UserError(
        `${rel(file)}: extends forms a cycle (${chain.map((s) => rel(s.file)).join(' -> ')})`,
      );
    }
    const src = readYaml(file);
    chain.push(src);
    const ext: Json | undefined = src.data.extends;
    if (ext !== undefined && typeof ext !== 'string') {
      throw new UserError(
        `${locate([src], ['extends'])}extends: expected a config name, got ${describeValue(ext)}`,
      );
    }
    next = ext;
  }
  let merged: JsonMap = {};
  for (const src of [...chain].reverse()) merged = deepMerge(merged, src.data);
  delete merged.extends;
  if (merged.name === undefined) merged.name = path.basename(chain[0]!.file).replace(/\.ya?ml$/, '');
  const overridden = new Set<string>();
  for (const text of overrides) {
    const { path: keyPath, value } = parseOverride(text);
    setIn(merged, keyPath, value);
    overridden.add(keyPath.join('.'));
  }
  const config = validate(TrainConfig, merged, (keyPath) => {
    const key = keyPath.join('.');
    for (const o of overridden) if (key === o || key.startsWith(`${o}.`)) return '--set ';
    return locate(chain, keyPath);
  });
  return { config, files: chain.map((s) => s.file) };
}

export function loadRobot(nameOrPath: string, cwd = process.cwd()): RobotSpec {
  const src = readYaml(findNamed('robots', nameOrPath, cwd));
  return validate(RobotSpec, src.data, (keyPath) => locate([src], keyPath));
}

/** The resolved config as YAML, as `vla config show` prints and checkpoints store. */
export function configToYaml(config: TrainConfig): string {
  return YAML.stringify(config, { lineWidth: 0 });
}
