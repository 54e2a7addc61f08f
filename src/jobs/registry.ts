import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { type Database, openDatabase } from './sqlite.js';

export const JOB_STATUSES = ['queued', 'running', 'stopping', 'finished', 'failed', 'stopped'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** States a job leaves only when something starts it again. */
export const FINAL_STATUSES: readonly JobStatus[] = ['finished', 'failed', 'stopped'];
export const isFinal = (s: JobStatus): boolean => FINAL_STATUSES.includes(s);

/** The last values the trainer reported; keys as in metrics.jsonl. */
export type JobMetrics = Record<string, number>;

export interface Job {
  id: number;
  configName: string;
  /** The resolved config, as JSON: what the trainer runs, so `jobs resume` needs no YAML files. */
  config: unknown;
  expName: string;
  status: JobStatus;
  /** Whether the next start continues from the newest checkpoint in runDir. */
  resume: boolean;
  pid: number | null;
  /** The process's start time (Linux: clock ticks since boot), so a reused pid is not taken for it. */
  pidStart: number | null;
  host: string | null;
  step: number;
  totalSteps: number;
  metrics: JobMetrics | null;
  runDir: string;
  logPath: string;
  checkpoint: string | null;
  error: string | null;
  createdAt: number;
  startedAt: number | null;
  updatedAt: number;
  finishedAt: number | null;
}

export interface JobEvent {
  time: number;
  status: JobStatus;
  message: string;
}

/**
 * Each entry moves the schema one version up; `PRAGMA user_version` records how many ran. Never edit
 * a shipped entry: databases in users' workspaces already ran it. Append a new one instead.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE jobs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     config_name TEXT NOT NULL,
     config_json TEXT NOT NULL,
     exp_name TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('queued','running','stopping','finished','failed','stopped')),
     resume INTEGER NOT NULL DEFAULT 0,
     pid INTEGER,
     pid_start INTEGER,
     host TEXT,
     step INTEGER NOT NULL DEFAULT 0,
     total_steps INTEGER NOT NULL,
     metrics_json TEXT,
     run_dir TEXT NOT NULL,
     log_path TEXT NOT NULL,
     checkpoint TEXT,
     error TEXT,
     created_at INTEGER NOT NULL,
     started_at INTEGER,
     updated_at INTEGER NOT NULL,
     finished_at INTEGER,
     UNIQUE (config_name, exp_name)
   );
   CREATE INDEX jobs_status ON jobs (status);`,
  // Status history, so `jobs show` can tell when a job was started, stopped, resumed or found dead.
  `CREATE TABLE job_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
     time INTEGER NOT NULL,
     status TEXT NOT NULL,
     message TEXT NOT NULL DEFAULT ''
   );
   CREATE INDEX job_events_job ON job_events (job_id, id);`,
];

/** How long a writer waits for another's lock before failing: trainers write at most about once a second. */
const BUSY_TIMEOUT_MS = 15_000;

/** The registry file of a workspace. */
export function registryPath(workspace = process.cwd()): string {
  return path.join(workspace, '.vla', 'jobs.db');
}

/** Bring a database to the newest schema (or to `upTo`). Safe when several processes open it at once. */
export function migrate(db: Database, file: string, upTo = MIGRATIONS.length): number {
  const run = db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new UserError(
        `${file}: schema version ${version} is newer than this vla knows (${MIGRATIONS.length}); upgrade vla-orchestrator`,
      );
    }
    for (let v = version; v < upTo; v++) db.exec(MIGRATIONS[v]!);
    if (upTo > version) db.pragma(`user_version = ${upTo}`);
    return Math.max(version, upTo);
  });
  // IMMEDIATE takes the write lock before reading the version, so two openers never both migrate.
  return run.immediate();
}

interface Row {
  id: number;
  config_name: string;
  config_json: string;
  exp_name: string;
  status: JobStatus;
  resume: number;
  pid: number | null;
  pid_start: number | null;
  host: string | null;
  step: number;
  total_steps: number;
  metrics_json: string | null;
  run_dir: string;
  log_path: string;
  checkpoint: string | null;
  error: string | null;
  created_at: number;
  started_at: number | null;
  updated_at: number;
  finished_at: number | null;
}

function fromRow(r: Row): Job {
  return {
    id: r.id,
    configName: r.config_name,
    config: JSON.parse(r.config_json),
    expName: r.exp_name,
    status: r.status,
    resume: r.resume !== 0,
    pid: r.pid,
    pidStart: r.pid_start,
    host: r.host,
    step: r.step,
    totalSteps: r.total_steps,
    metrics: r.metrics_json === null ? null : (JSON.parse(r.metrics_json) as JobMetrics),
    runDir: r.run_dir,
    logPath: r.log_path,
    checkpoint: r.checkpoint,
    error: r.error,
    createdAt: r.created_at,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

/** Fields a caller may change, and their columns. */
const COLUMNS = {
  status: 'status',
  resume: 'resume',
  pid: 'pid',
  pidStart: 'pid_start',
  host: 'host',
  step: 'step',
  totalSteps: 'total_steps',
  metrics: 'metrics_json',
  checkpoint: 'checkpoint',
  error: 'error',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  config: 'config_json',
} as const;
export type JobPatch = Partial<Pick<Job, keyof typeof COLUMNS>>;

function toColumn(key: keyof typeof COLUMNS, value: unknown): unknown {
  if (key === 'metrics' || key === 'config') return value === null ? null : JSON.stringify(value);
  if (key === 'resume') return value ? 1 : 0;
  return value;
}

/** What must still hold for an update to apply. */
export interface Condition {
  status?: readonly JobStatus[];
  pid?: number | null;
}

export interface NewJob {
  configName: string;
  config: unknown;
  expName: string;
  runDir: string;
  totalSteps: number;
  resume: boolean;
}

/**
 * The job registry: one SQLite file per workspace, shared by the CLI and every trainer process. WAL
 * lets readers run beside a writer; the busy timeout makes concurrent writers wait instead of failing.
 */
export class JobRegistry {
  readonly db: Database;

  constructor(readonly file: string) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = openDatabase(file, { timeout: BUSY_TIMEOUT_MS });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    migrate(this.db, file);
  }

  static open(workspace = process.cwd()): JobRegistry {
    return new JobRegistry(registryPath(workspace));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** The log file of a job: beside the registry, so it outlives `--overwrite` of the run folder. */
  logPathFor(id: number): string {
    return path.join(path.dirname(this.file), 'logs', `job-${id}.log`);
  }

  create(job: NewJob): Job {
    const now = Date.now();
    const insert = this.db.transaction(() => {
      const info = this.db
        .prepare(
          `INSERT INTO jobs (config_name, config_json, exp_name, status, resume, total_steps, run_dir, log_path, created_at, updated_at)
           VALUES (?, ?, ?, 'queued', ?, ?, ?, '', ?, ?)`,
        )
        .run(
          job.configName,
          JSON.stringify(job.config),
          job.expName,
          job.resume ? 1 : 0,
          job.totalSteps,
          job.runDir,
          now,
          now,
        );
      const id = Number(info.lastInsertRowid);
      this.db.prepare('UPDATE jobs SET log_path = ? WHERE id = ?').run(this.logPathFor(id), id);
      this.addEvent(id, 'queued', 'created', now);
      return id;
    });
    return this.require(insert.immediate());
  }

  get(id: number): Job | undefined {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** The job, or a clear error naming the ids that exist. */
  require(id: number): Job {
    const job = this.get(id);
    if (job) return job;
    const ids = (this.db.prepare('SELECT id FROM jobs ORDER BY id').all() as Array<{ id: number }>).map(
      (r) => r.id,
    );
    throw new UserError(
      `no job ${id} in ${path.relative(process.cwd(), this.file) || this.file}: ${ids.length > 0 ? `known ids are ${ids.join(', ')}` : 'there are no jobs yet'} (see vla jobs list)`,
    );
  }

  findByExperiment(configName: string, expName: string): Job | undefined {
    const row = this.db
      .prepare('SELECT * FROM jobs WHERE config_name = ? AND exp_name = ?')
      .get(configName, expName) as Row | undefined;
    return row && fromRow(row);
  }

  list(): Job[] {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY id').all() as Row[]).map(fromRow);
  }

  /**
   * Change fields of a job. With `when`, the change happens only while the job still has that status
   * and pid (compare-and-set across processes); returns whether it happened.
   */
  update(id: number, patch: JobPatch, when: Condition = {}): boolean {
    const keys = Object.keys(patch) as Array<keyof typeof COLUMNS>;
    const sets = [...keys.map((k) => `${COLUMNS[k]} = ?`), 'updated_at = ?'];
    const values = [...keys.map((k) => toColumn(k, patch[k])), Date.now()];
    let where = 'id = ?';
    const whereValues: unknown[] = [id];
    if (when.status) {
      where += ` AND status IN (${when.status.map(() => '?').join(', ')})`;
      whereValues.push(...when.status);
    }
    if (when.pid !== undefined) {
      where += ' AND pid IS ?';
      whereValues.push(when.pid);
    }
    const apply = this.db.transaction(() => {
      const changed = this.db
        .prepare(`UPDATE jobs SET ${sets.join(', ')} WHERE ${where}`)
        .run(...values, ...whereValues).changes;
      return changed > 0;
    });
    return apply.immediate();
  }

  /** Move a job to a status and record it in its history, in one transaction. */
  transition(
    id: number,
    status: JobStatus,
    message: string,
    patch: JobPatch = {},
    when: Condition = {},
  ): boolean {
    const now = Date.now();
    const full: JobPatch = { ...patch, status };
    if (isFinal(status)) full.finishedAt = now;
    const apply = this.db.transaction(() => {
      if (!this.update(id, full, when)) return false;
      this.addEvent(id, status, message, now);
      return true;
    });
    return apply.immediate();
  }

  events(id: number): JobEvent[] {
    return this.db
      .prepare('SELECT time, status, message FROM job_events WHERE job_id = ? ORDER BY id')
      .all(id) as JobEvent[];
  }

  remove(id: number): void {
    this.db.prepare('DELETE FROM jobs WHERE id = ?').run(id);
  }

  private addEvent(id: number, status: JobStatus, message: string, time: number): void {
    this.db
      .prepare('INSERT INTO job_events (job_id, time, status, message) VALUES (?, ?, ?, ?)')
      .run(id, time, status, message);
  }
}

export const thisHost = (): string => os.hostname();
