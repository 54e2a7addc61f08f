import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding package.json, configs/, robots/ and checkpoints/base/: two up from this module,
 * whether it runs as source (src/config/) or compiled (dist/config/). Without the YAML and zod that
 * load.ts brings, for the CLI's help.
 */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
