'use strict';
// `npm install` script: builds the addon with node-gyp against the running node's own headers
// (<prefix>/include/node, e.g. /usr/include/node), so nothing is downloaded. A non-zero exit makes npm
// drop this optional dependency (npm ci still succeeds) and `require('vla-onednn')` then throws, which
// the caller takes as "oneDNN not available".
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const args = ['rebuild'];
// /usr/bin/node -> /usr; node-gyp wants <nodedir>/include/node/{node_api.h,common.gypi}.
const prefix = path.resolve(path.dirname(process.execPath), '..');
const headers = path.join(prefix, 'include', 'node');
if (
  !process.env.npm_config_nodedir &&
  fs.existsSync(path.join(headers, 'node_api.h')) &&
  fs.existsSync(path.join(headers, 'common.gypi'))
) {
  args.push(`--nodedir=${prefix}`);
}

// npm tells lifecycle scripts where its bundled node-gyp is; otherwise node-gyp from PATH (npm puts a
// shim there), then npm's copy next to this node.
const candidates = [
  process.env.npm_config_node_gyp,
  path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].filter((p) => p && fs.existsSync(p));
let r;
if (candidates.length > 0) {
  r = spawnSync(process.execPath, [candidates[0], ...args], { cwd: __dirname, stdio: 'inherit' });
} else {
  r = spawnSync('node-gyp', args, { cwd: __dirname, stdio: 'inherit', shell: process.platform === 'win32' });
}
if (r.error) console.error(`vla-onednn: could not run node-gyp: ${r.error.message}`);
if (r.status !== 0) {
  console.error(
    'vla-onednn: build failed (needs libdnnl-dev and a C++ compiler); bf16 products through oneDNN are unavailable',
  );
}
process.exit(r.status == null ? 1 : r.status);
