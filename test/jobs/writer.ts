// A separate process that hammers the registry, for the concurrent-writer test:
// node --import tsx writer.ts DB_FILE JOB_ID N
import { JobRegistry } from '../../src/jobs/registry.js';

const [file, id, n] = process.argv.slice(2);
const registry = new JobRegistry(file!);
for (let i = 1; i <= Number(n); i++) {
  const created = registry.create({
    configName: 'cfg',
    config: { writer: process.pid, i },
    expName: `w${process.pid}-${i}`,
    runDir: '/nonexistent',
    totalSteps: 10,
    resume: false,
  });
  registry.transition(created.id, 'running', 'started');
  registry.update(Number(id), { step: i, metrics: { loss: i, writer: process.pid } });
  registry.transition(created.id, 'finished', 'done', { step: 10 });
}
registry.close();
