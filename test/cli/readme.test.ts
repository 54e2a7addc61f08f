/**
 * Every `vla` command in a ```bash block of README.md, docs/*.md and checkpoints/base/README.md is one the CLI accepts: its command
 * and subcommand exist, every flag is one that command defines, its arguments fit, and each config it
 * names exists under configs/ and resolves with its --set overrides. Commands are parsed by the real
 * commander program and stopped before their action runs. `npm test` and `npm run X` must name scripts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { type Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { resolveConfig } from '../../src/config/load.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DOCS = [
  'README.md',
  'checkpoints/base/README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

interface Line {
  where: string;
  text: string;
}

/** The logical lines of every ```bash block (`\` continuations joined), each with file:line. */
function bashLines(file: string, text: string): Line[] {
  const lines: Line[] = [];
  let inBash = false;
  let pending: Line | undefined;
  for (const [i, raw] of text.split('\n').entries()) {
    const fence = raw.trim().match(/^```(\S*)/);
    if (fence) {
      inBash = !inBash && fence[1] === 'bash';
      continue;
    }
    if (!inBash) continue;
    const continued = raw.endsWith('\\');
    const part = continued ? raw.slice(0, -1) : raw;
    pending = pending
      ? { ...pending, text: `${pending.text.trimEnd()} ${part.trim()}` }
      : { where: `${file}:${i + 1}`, text: part };
    if (!continued) {
      lines.push(pending);
      pending = undefined;
    }
  }
  return lines;
}

/**
 * A shell line as words, cut into simple commands at `&&`, `||`, `;` and `|`; a comment ends it. Quotes
 * group as the shell does; a `<placeholder with spaces>` is one word; `[--flag]` (optional) is the flag.
 */
function simpleCommands(line: string): string[][] {
  const commands: string[][] = [[]];
  let i = 0;
  const closing: Record<string, string> = { "'": "'", '"': '"', '<': '>', '[': ']' };
  while (i < line.length) {
    const c = line[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '#') {
      break;
    } else if (c === ';' || c === '|' || c === '&') {
      i += line[i + 1] === c ? 2 : 1;
      commands.push([]);
    } else {
      let word = '';
      while (i < line.length && !/[\s;|&]/.test(line[i]!)) {
        const open = line[i]!;
        const close = closing[open];
        const end = close ? line.indexOf(close, i + 1) : -1;
        if (end > i) {
          const inner = line.slice(i + 1, end);
          word += open === '[' ? inner.split('|')[0]! : open === '<' ? line.slice(i, end + 1) : inner;
          i = end + 1;
        } else {
          word += open;
          i++;
        }
      }
      commands.at(-1)!.push(word);
    }
  }
  return commands.filter((words) => words.length > 0);
}

/** Thrown from the preAction hook: parsing got as far as the action, which does not run. */
class Accepted extends Error {
  constructor(readonly command: Command) {
    super('accepted');
  }
}

function quiet(command: Command): void {
  command.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
  for (const sub of command.commands) quiet(sub);
}

const placeholder = (arg: string) => /[<$]/.test(arg);

/** The positional arguments of a command that name configs. */
function configArgs(command: Command): string[] {
  const isConfigCommand =
    command.parent?.name() === 'config' && ['show', 'validate'].includes(command.name());
  return command.registeredArguments.flatMap((arg, i) => {
    if (arg.name() !== 'config' && !isConfigCommand) return [];
    const value = command.processedArgs[i] as string | string[] | undefined;
    return value === undefined ? [] : [value].flat();
  });
}

/** Why the CLI refuses `vla <args>`, or undefined when it accepts it. */
async function refusal(args: string[]): Promise<string | undefined> {
  const program = await buildProgram(['node', 'vla']);
  quiet(program);
  program.hook('preAction', (_root, action) => {
    throw new Accepted(action);
  });
  try {
    await program.parseAsync(args, { from: 'user' });
    return 'the command ran without reaching an action';
  } catch (e) {
    if (e instanceof CommanderError) {
      return ['commander.helpDisplayed', 'commander.version'].includes(e.code) ? undefined : e.message;
    }
    if (!(e instanceof Accepted)) return (e as Error).message;
    const sets = (e.command.opts().set as string[] | undefined) ?? [];
    for (const name of configArgs(e.command)) {
      if (placeholder(name)) continue;
      const named = ['.yaml', '.yml'].some((ext) => existsSync(path.join(ROOT, 'configs', name + ext)));
      if (!named && !(/\.ya?ml$/.test(name) && existsSync(path.join(ROOT, name)))) {
        return `config "${name}": not under configs/`;
      }
      try {
        resolveConfig(
          name,
          sets.filter((s) => !placeholder(s)),
          ROOT,
        );
      } catch (err) {
        return `config "${name}": ${(err as Error).message}`;
      }
    }
    return undefined;
  }
}

const scripts = (
  JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
).scripts;

describe('the commands in README.md and docs/', () => {
  const commands = DOCS.flatMap((file) =>
    bashLines(file, readFileSync(path.join(ROOT, file), 'utf8')).flatMap((line) =>
      simpleCommands(line.text).map((words) => ({ where: line.where, words })),
    ),
  );
  const vla = commands
    .map(({ where, words }) => ({ where, args: words[0] === 'npx' ? words.slice(1) : words }))
    .filter(({ args }) => args[0] === 'vla');

  it('reads the shell words as a shell would, for the forms the documents use', () => {
    expect(simpleCommands('npm ci && npx vla demo     # install, then serve')).toEqual([
      ['npm', 'ci'],
      ['npx', 'vla', 'demo'],
    ]);
    expect(
      simpleCommands('vla jobs plot <ft job> <scratch job> --out "a b.svg"; vla x [--swap-prompts]'),
    ).toEqual([
      ['vla', 'jobs', 'plot', '<ft job>', '<scratch job>', '--out', 'a b.svg'],
      ['vla', 'x', '--swap-prompts'],
    ]);
    expect(bashLines('f', 'x\n```bash\nvla a \\\n  --b 1\n```\nvla c\n')).toEqual([
      { where: 'f:3', text: 'vla a --b 1' },
    ]);
  });

  it('finds the README’s first two commands', () => {
    const readme = commands.filter((c) => c.where.startsWith('README.md:'));
    expect(readme.slice(0, 3).map((c) => c.words.join(' '))).toEqual(['npm ci', 'npx vla demo', 'npm test']);
  });

  it('refuses what the CLI refuses', async () => {
    expect(await refusal(['train', 'pi0_aloha', '--exp-name', 'x'])).toBeUndefined();
    expect(await refusal(['train', 'pi0_aloha', '--exp-name', 'x', '--no-such-flag'])).toMatch(
      /unknown option/,
    );
    expect(await refusal(['jobs', 'frobnicate'])).toMatch(/unknown command/);
    expect(await refusal(['train', 'no_such_config', '--exp-name', 'x'])).toMatch(/not under configs/);
    expect(await refusal(['config', 'show', 'pi0_aloha', '--set', 'train.nope=1'])).toMatch(/unknown field/);
  });

  it('every vla command parses, with flags its command defines and configs that exist', async () => {
    expect(vla.length).toBeGreaterThan(20);
    const bad: string[] = [];
    for (const { where, args } of vla) {
      const why = await refusal(args.slice(1));
      if (why) bad.push(`${where}: ${args.join(' ')}\n    ${why}`);
    }
    expect(bad, bad.join('\n')).toEqual([]);
  });

  it('every npm script the documents run exists', () => {
    const npm = commands.filter(({ words }) => words[0] === 'npm' && ['test', 'run'].includes(words[1]!));
    for (const { where, words } of npm) {
      const script = words[1] === 'test' ? 'test' : words[2]!;
      expect(scripts[script], `${where}: npm ${words.slice(1).join(' ')}`).toBeDefined();
    }
  });
});
