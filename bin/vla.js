#!/usr/bin/env node
// The CLI runs compiled JavaScript (dist/, built by `npm ci` through `prepare`). In a checkout, where
// src/ is the program and changes all the time, dist/ is first brought up to date with it (a few ms when
// it is, a recompile of the changed files when not: scripts/build.js), so no command, test or benchmark
// ever runs a build older than its sources. An installed package has no src/ and runs dist/ as it is.
import { existsSync } from 'node:fs';

if (existsSync(new URL('../src/', import.meta.url))) {
  const { ensureBuilt } = await import('../scripts/build.js');
  await ensureBuilt();
}
await import('../dist/cli/main.js');
