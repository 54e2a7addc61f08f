/**
 * One share of the sim bench's scaling row, as a process of its own: `node --import tsx bench/sim-share.ts
 * URL EPISODES` runs the episodes on its main thread and prints the seconds they took.
 */
import { evalEpisodes } from '../src/sim/eval.js';

const [url, count] = process.argv.slice(2);
const episodes = Number(count);
const t0 = performance.now();
await evalEpisodes(
  { task: 'aloha_transfer_cube', url: url!, episodes, workers: 1, seed: 0, videos: 0 },
  Array.from({ length: episodes }, (_, i) => i),
  () => {},
);
console.log(((performance.now() - t0) / 1000).toFixed(3));
