import { createRequire } from 'node:module';

/**
 * The part of better-sqlite3's API the registry uses. The package ships no types and the registry is
 * its only user, so the surface is declared here rather than pulling in @types for a handful of calls.
 */
export interface Statement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

export interface Database {
  prepare(sql: string): Statement;
  exec(sql: string): void;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  transaction<A extends unknown[], R>(
    fn: (...args: A) => R,
  ): ((...args: A) => R) & {
    immediate: (...args: A) => R;
  };
  close(): void;
  readonly open: boolean;
}

type DatabaseCtor = new (file: string, options?: { timeout?: number }) => Database;

const require = createRequire(import.meta.url);
/** Loaded on the first open, so that a command which only names the registry (--help) does not load SQLite. */
let Sqlite: DatabaseCtor | null = null;

export function openDatabase(file: string, options?: { timeout?: number }): Database {
  Sqlite ??= require('better-sqlite3') as DatabaseCtor;
  return new Sqlite(file, options);
}
