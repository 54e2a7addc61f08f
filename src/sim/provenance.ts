/**
 * Which simulated scene a dataset was recorded in. `vla sim record` writes it into meta/info.json
 * (`simulation`), `vla data stats` carries it into the norm stats' `computed_with`, so every checkpoint
 * trained from simulated demonstrations knows the scene its cameras saw. Training and evaluation compare
 * it with the scene as it is now: a camera moved since recording gives a policy that never saw the images
 * it is shown, and fails without any error of its own.
 */
import path from 'node:path';
import { PACKAGE_ROOT } from '../config/load.js';
import { parseSimProvenance, type SimProvenance } from '../data/info.js';
import { checkpointNormStatsFile, readNormStats } from '../transforms/normalize.js';
import { sceneFile, type Task } from './env.js';
import { sceneSha256 } from './mujoco.js';
import { TASKS } from './tasks/index.js';

function sceneName(file: string): string {
  const rel = path.relative(PACKAGE_ROOT, path.resolve(file));
  return rel.startsWith('..') || path.isAbsolute(rel) ? path.resolve(file) : rel.split(path.sep).join('/');
}

export function simProvenance(task: Task): SimProvenance {
  const file = sceneFile(task);
  return {
    task: task.name,
    // Relative to the package, so recordings made from any working directory compare equal.
    scene: sceneName(file),
    scene_sha256: sceneSha256(file),
  };
}

/**
 * A warning when `recorded` was made in another version of the scene `task` runs in now; null when they
 * match, when nothing was recorded (real-robot data, older datasets) or when it was another task's scene.
 * `what` names the data or checkpoint for the message.
 */
export function sceneDrift(recorded: SimProvenance | null, task: Task, what: string): string | null {
  if (!recorded) return null;
  const now = simProvenance(task);
  if (recorded.scene !== now.scene) return null;
  if (recorded.scene_sha256 === now.scene_sha256) return null;
  return (
    `${what}: its demonstrations were recorded in ${recorded.scene} with sha256 ${recorded.scene_sha256.slice(0, 12)}, ` +
    `expected the scene as it is now (sha256 ${now.scene_sha256.slice(0, 12)}): its cameras or objects ` +
    `changed since, so the policy sees images it never trained on; record the demonstrations again`
  );
}

/** The scene a checkpoint's training data came from, as its norm stats' `computed_with` records it. */
export function checkpointSimProvenance(checkpointDir: string): SimProvenance | null {
  const file = checkpointNormStatsFile(checkpointDir);
  return file ? parseSimProvenance(readNormStats(file).computedWith?.simulation) : null;
}

/** sceneDrift for a checkpoint about to run `task`, named as the checkpoint in the message. */
export const checkpointSceneDrift = (checkpointDir: string, task: Task): string | null =>
  sceneDrift(checkpointSimProvenance(checkpointDir), task, `checkpoint ${checkpointDir}`);

/** sceneDrift for the task a recording names, when that task still exists. */
export function recordedSceneDrift(recorded: SimProvenance | null, what: string): string | null {
  const entry = recorded ? TASKS[recorded.task] : undefined;
  return entry ? sceneDrift(recorded, entry.task, what) : null;
}
