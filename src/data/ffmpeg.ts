/**
 * One way to run ffmpeg and ffprobe: found once per process (VLA_FFMPEG / VLA_FFPROBE, then the system's,
 * then the static binary an optional npm package ships), started in one place, and a failed run reported
 * with the command, its exit code and the end of its stderr.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { UserError } from '../config/errors.js';

const require = createRequire(import.meta.url);

export type Tool = 'ffmpeg' | 'ffprobe';

/** The variable that names each tool's binary, and the optional npm package that ships a static build. */
const SOURCES: Record<Tool, { envVar: string; pkg: string }> = {
  ffmpeg: { envVar: 'VLA_FFMPEG', pkg: '@ffmpeg-installer/ffmpeg' },
  ffprobe: { envVar: 'VLA_FFPROBE', pkg: '@ffprobe-installer/ffprobe' },
};

const found: Partial<Record<Tool, string>> = {};

/**
 * The binary every ffmpeg/ffprobe run goes through, looked up once per process (and only by processes
 * that run one): the variable when set, else the system's (Debian's has x264 and SVT-AV1), else the
 * static build of the optional npm package (x264, no AV1), else the bare name, whose failure to start
 * startTool reports with the ways to install it.
 */
export function toolPath(tool: Tool): string {
  const known = found[tool];
  if (known) return known;
  const { envVar, pkg } = SOURCES[tool];
  let bin = process.env[envVar];
  if (!bin && !spawnSync(tool, ['-version'], { stdio: 'ignore' }).error) bin = tool;
  if (!bin) {
    try {
      bin = (require(pkg) as { path: string }).path;
    } catch {
      bin = tool;
    }
  }
  found[tool] = bin;
  return bin;
}

/** Only the end of stderr is kept: it holds the reason, and a chatty tool cannot fill the memory. */
const STDERR_KEPT = 64 * 1024;
/** The lines of stderr an error quotes (joined: a UserError prints as one line). */
const STDERR_LINES = 3;

/** A started tool: its process, and how it ended. */
export interface ToolProcess {
  child: ChildProcess;
  /** The exit code once the process has ended and its pipes closed; -1 where it could not start. */
  exited: Promise<number>;
  /**
   * Resolves once the tool has exited with 0; rejects with a UserError naming the command run, its exit
   * code (or signal) and the tail of its stderr. A function, so that an end nobody asks about (an
   * aborted encoder) is no unhandled rejection.
   */
  succeeded(): Promise<void>;
}

const quoteArg = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);

/**
 * Starts ffmpeg or ffprobe, the one way this project runs them. stderr is always captured for the
 * error; stdin and stdout are pipes only when asked for (an unread stdout pipe would stall the tool).
 * `what` begins the error message: the file concerned and what was being done to it.
 */
export function startTool(
  tool: Tool,
  args: string[],
  what: string,
  pipes: { stdin?: boolean; stdout?: boolean } = {},
): ToolProcess {
  const bin = toolPath(tool);
  const child = spawn(bin, args, {
    stdio: [pipes.stdin ? 'pipe' : 'ignore', pipes.stdout ? 'pipe' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 2 * STDERR_KEPT) stderr = stderr.slice(-STDERR_KEPT);
  });
  // A tool that exits early closes its end of stdin; the exit code and stderr say why, not EPIPE.
  child.stdin?.on('error', () => {});
  let startError: Error | undefined;
  let signal: NodeJS.Signals | null = null;
  const exited = new Promise<number>((resolve) => {
    child.on('error', (e) => {
      startError = e;
      resolve(-1);
    });
    child.on('close', (code, sig) => {
      signal = sig;
      resolve(code ?? 1);
    });
  });
  const succeeded = async () => {
    const code = await exited;
    if (code === 0) return;
    const command = [bin, ...args].map(quoteArg).join(' ');
    if (code === -1) {
      const { envVar, pkg } = SOURCES[tool];
      throw new UserError(
        `${what}: cannot run ${command} (${startError?.message}): install ffmpeg (apt-get install ffmpeg, or npm install ${pkg}) or set ${envVar} to the ${tool} binary`,
      );
    }
    const tail = stderr.trim().split('\n').slice(-STDERR_LINES).join(' | ') || 'nothing on stderr';
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    throw new UserError(`${what}: ${command} ${how}: ${tail}`);
  };
  return { child, exited, succeeded };
}

/**
 * Runs a tool to completion without blocking the event loop (frames of other decodes keep flowing),
 * feeding it `input` on stdin when given, and returns what it wrote to stdout.
 */
export async function runTool(
  tool: Tool,
  args: string[],
  what: string,
  input?: Uint8Array[],
): Promise<Buffer> {
  const run = startTool(tool, args, what, { stdin: input !== undefined, stdout: true });
  const out: Buffer[] = [];
  run.child.stdout?.on('data', (d: Buffer) => out.push(d));
  if (input && run.child.stdin) {
    for (const chunk of input) run.child.stdin.write(chunk);
    run.child.stdin.end();
  }
  await run.succeeded();
  return Buffer.concat(out);
}
