// A trainer process for tests, as `vla jobs _run ID` is, but reading a synthetic data source:
// node --import tsx trainer-proc.ts WORKSPACE JOB_ID
import { setupBackend } from '../../src/backend/index.js';
import { validate } from '../../src/config/load.js';
import { TrainConfig } from '../../src/config/schema.js';
import { runJobProcess } from '../../src/jobs/job-process.js';
import { JobRegistry } from '../../src/jobs/registry.js';
import { modelDims } from '../../src/model/config.js';
import { runTraining } from '../../src/train/run.js';
import { identityStats, syntheticSource } from './synthetic.js';

const [ws, id] = process.argv.slice(2);
process.chdir(ws!);
const registry = JobRegistry.open(ws);
const job = registry.require(Number(id));
const config = validate(TrainConfig, job.config, () => '');
const dims = modelDims(config.model);
await setupBackend();
await runJobProcess(registry, job.id, {
  train: (opts) =>
    runTraining({
      ...opts,
      data: syntheticSource(dims.imageSize, dims.horizon),
      normStats: identityStats(14),
    }),
  output: 'log',
  logInterval: config.train.log_interval,
});
registry.close();
