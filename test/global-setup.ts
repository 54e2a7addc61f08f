/**
 * Before any test: dist/ and packages/client/dist/ brought up to date with their sources, once, so that
 * the processes tests spawn (bin/vla.js, which would also do it, and tsx scripts that import the client
 * package by name) run what is in src/ now, and parallel test files do not each recompile.
 */
import { ensureBuilt } from '../scripts/build.js';

export default async function setup(): Promise<void> {
  await ensureBuilt();
}
