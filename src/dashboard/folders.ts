/**
 * The folders a dashboard was given (datasets, evaluations), and the one way a request names a file:
 * `<folder name>/<path inside it>`. An absolute path is refused (400) and so is any `..` (403), before
 * anything is looked up; what remains must still lie inside its folder once symbolic links are followed.
 */
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { describeValue } from '../config/errors.js';
import { HttpError } from './http.js';

/** A path as the page shows it: relative to the workspace when inside it, else as it is. */
export function shownPath(workspace: string, p: string): string {
  const r = path.relative(workspace, p);
  return r.startsWith('..') || path.isAbsolute(r) ? p : r || '.';
}

export interface Folder {
  /** What requests call it: the folder's own name, with -2, -3 … when two share one. */
  name: string;
  /** Absolute. */
  dir: string;
}

export interface Resolved {
  folder: Folder;
  /** Absolute path of the file or folder named. */
  file: string;
  /** The name a request uses for it. */
  id: string;
}

export class Folders {
  private readonly folders: Folder[] = [];

  constructor(dirs: string[] = []) {
    for (const dir of dirs) this.add(dir);
  }

  /** Adds a folder (once); returns it. */
  add(dir: string): Folder {
    const abs = path.resolve(dir);
    const known = this.folders.find((f) => f.dir === abs);
    if (known) return known;
    const base = path.basename(abs) || 'root';
    let name = base;
    for (let i = 2; this.folders.some((f) => f.name === name); i++) name = `${base}-${i}`;
    const folder = { name, dir: abs };
    this.folders.push(folder);
    return folder;
  }

  list(): readonly Folder[] {
    return this.folders;
  }

  /** The request name of a path inside one of the folders, or null when it lies in none. */
  idOf(file: string): string | null {
    const abs = path.resolve(file);
    for (const f of this.folders) {
      const rel = path.relative(f.dir, abs);
      if (rel === '') return f.name;
      if (!rel.startsWith('..') && !path.isAbsolute(rel)) return `${f.name}/${rel.split(path.sep).join('/')}`;
    }
    return null;
  }

  /** The file a request names in `field`, or the error saying why it may not have it. */
  resolve(requested: string, field: string): Resolved {
    const names = this.folders.map((f) => f.name).join(', ') || 'none';
    if (requested === '' || requested.includes('\0')) {
      throw new HttpError(
        400,
        `${field}: expected a path such as <folder>/<file>, got ${describeValue(requested)}`,
      );
    }
    if (path.isAbsolute(requested) || path.win32.isAbsolute(requested)) {
      throw new HttpError(
        400,
        `${field}: expected a path relative to the dashboard's folders (${names}), got the absolute path ${JSON.stringify(requested)}`,
      );
    }
    const parts = requested.split(/[/\\]+/).filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) {
      throw new HttpError(
        403,
        `${field}: expected a path inside the dashboard's folders (${names}), got ${JSON.stringify(requested)}, which leads out of them with ".."`,
      );
    }
    const folder = this.folders.find((f) => f.name === parts[0]);
    if (!folder) {
      throw new HttpError(
        404,
        `${field}: no folder named ${JSON.stringify(parts[0] ?? '')} (the dashboard's folders: ${names})`,
      );
    }
    const file = path.join(folder.dir, ...parts.slice(1));
    if (existsSync(file)) {
      const real = realpathSync(file);
      const root = existsSync(folder.dir) ? realpathSync(folder.dir) : folder.dir;
      if (real !== root && !real.startsWith(root + path.sep)) {
        throw new HttpError(
          403,
          `${field}: ${JSON.stringify(requested)} is a link that leads out of the folder ${folder.name} (${folder.dir})`,
        );
      }
    }
    return { folder, file, id: [folder.name, ...parts.slice(1)].join('/') };
  }
}
