import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { type Job, type JobRegistry, thisHost } from './registry.js';

/**
 * When a process started, in clock ticks since boot (field 22 of /proc/PID/stat), or null where /proc
 * is not there. Stored beside the pid so a pid the kernel has handed to another process is not
 * mistaken for the trainer.
 */
export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return null;
  }
}

/** Whether the process with this pid (and, when known, this start time) is alive: zombies count as dead. */
export function processAlive(pid: number, startTime: number | null): boolean {
  if (existsSync(`/proc/${pid}/stat`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return false;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return false;
    return startTime === null || Number(fields[19]) === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the pid exists but belongs to someone else, so it is not our trainer either way.
    return (e as NodeJS.ErrnoException).code === 'EPERM' && startTime === null;
  }
}

/** The last `lines` lines of a file (reading at most the last 64 KiB), or '' when it is missing. */
export function tailFile(file: string, lines: number): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const text = buf.toString('utf8').replace(/\r/g, '\n').replace(/\n+$/, '');
    return text.split('\n').slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}

/** Whether this job's process runs on this machine and is alive. */
export function jobAlive(job: Job): boolean {
  return job.pid !== null && job.host === thisHost() && processAlive(job.pid, job.pidStart);
}

/**
 * Find jobs of this machine whose process died without writing a final status (killed, out of memory,
 * machine rebooted) and mark them failed with the end of their log. Jobs of other hosts are left alone:
 * their processes cannot be seen from here. Returns the jobs it marked.
 */
export function reapDeadJobs(registry: JobRegistry): Job[] {
  const marked: Job[] = [];
  for (const job of registry.list()) {
    if (job.status !== 'running' && job.status !== 'stopping' && job.status !== 'queued') continue;
    if (job.host !== thisHost() || job.pid === null) continue;
    if (processAlive(job.pid, job.pidStart)) continue;
    const tail = tailFile(job.logPath, 20);
    const error = `process ${job.pid} died without a final status at step ${job.step}${tail ? `; end of its log:\n${tail}` : ' (its log is empty)'}`;
    // Only if nothing changed meanwhile: the process may have written its status since we read it.
    if (
      registry.transition(
        job.id,
        'failed',
        `process ${job.pid} found dead`,
        { error },
        { status: [job.status], pid: job.pid },
      )
    ) {
      marked.push(registry.require(job.id));
    }
  }
  return marked;
}
