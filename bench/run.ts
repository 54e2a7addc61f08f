/**
 * `npm run bench -- <name>`: runs the named benchmarks (all when none is named) and prints a table each.
 * Each benchmark is a module in this folder exporting `run(): Promise<void>`.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';

const dir = import.meta.dirname;
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.replace(/\.bench\.ts$/, ''))
  .sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(
    `unknown benchmark ${unknown.join(', ')}: expected one of ${available.join(', ') || '(none yet)'}`,
  );
  process.exit(1);
}
for (const name of wanted.length > 0 ? wanted : available) {
  console.log(`\n## ${name}\n`);
  const mod = (await import(path.join(dir, `${name}.bench.ts`))) as { run: () => Promise<void> };
  await mod.run();
}
