import path from 'node:path';
import type { Command } from 'commander';
import { collect, table } from './output.js';

export function registerConfig(program: Command): void {
  const cmd = program.command('config').description('list, show and check named configs and robot specs');

  cmd
    .command('list')
    .description('list the named configs and robot specs')
    .action(async () => {
      const { listNamed, loadRobot } = await import('../config/load.js');
      const { actionDim, stateDim } = await import('../config/robot.js');
      const configs = listNamed('configs').filter((c) => !c.name.startsWith('_'));
      console.log(
        table(
          ['config', 'description'],
          configs.map((c) => [c.name, c.description]),
        ),
      );
      console.log('');
      const robots = listNamed('robots').map((r) => {
        const spec = loadRobot(r.file);
        return [
          spec.name,
          String(stateDim(spec)),
          String(actionDim(spec)),
          `${spec.control_hz} Hz`,
          spec.cameras.map((c) => c.name).join(', '),
        ];
      });
      console.log(table(['robot', 'state', 'action', 'rate', 'cameras'], robots));
    });

  cmd
    .command('show')
    .description('print a config fully resolved (extends followed, defaults filled, overrides applied)')
    .argument('<name>', 'config name or path to a YAML file')
    .option('--set <key=value>', 'override a field, e.g. train.batch_size=16 (repeatable)', collect, [])
    .action(async (name: string, opts: { set: string[] }) => {
      const { configToYaml, resolveConfig } = await import('../config/load.js');
      const { config, files } = resolveConfig(name, opts.set);
      console.log(`# resolved from ${files.map((f) => path.relative(process.cwd(), f) || f).join(' <- ')}`);
      process.stdout.write(configToYaml(config));
    });

  cmd
    .command('validate')
    .description('check configs (all named ones when none is given); exits non-zero on the first bad one')
    .argument('[names...]', 'config names or paths')
    .action(async (names: string[]) => {
      const { listNamed, loadRobot, resolveConfig } = await import('../config/load.js');
      const { actionDim, stateDim } = await import('../config/robot.js');
      const { checkRobotFits, modelDims } = await import('../model/config.js');
      const todo = names.length > 0 ? names : listNamed('configs').map((c) => c.name);
      for (const name of todo) {
        const { config, files } = resolveConfig(name);
        const robot = loadRobot(config.robot);
        // Sizes that parse but cannot work together: the robot must fit the model's padded dims.
        checkRobotFits(
          modelDims(config.model),
          { stateDim: stateDim(robot), actionDim: actionDim(robot), cameras: robot.cameras.length },
          `${path.relative(process.cwd(), files[0]!) || files[0]}: model`,
        );
        console.log(`ok  ${name}`);
      }
    });

  cmd
    .command('robot')
    .description(
      'print a robot spec: state and action dims with joint names, cameras, rate, observation keys',
    )
    .argument('<name>', 'robot name or path to a YAML file')
    .action(async (name: string) => {
      const { loadRobot } = await import('../config/load.js');
      const { actionDim, stateDim } = await import('../config/robot.js');
      const spec = loadRobot(name);
      const key = (k: string | string[]) => (Array.isArray(k) ? k.join(' > ') : k);
      console.log(`${spec.name}: ${spec.description}`);
      console.log(`control rate ${spec.control_hz} Hz, prompt key "${key(spec.prompt_key)}"\n`);
      console.log(
        table(
          ['state from observation key', 'dims'],
          spec.state.parts.map((p) => [key(p.key), String(p.dim)]),
        ),
      );
      console.log(`\nstate (${stateDim(spec)}): ${spec.state.names.join(', ')}`);
      console.log(`action (${actionDim(spec)}): ${spec.action.names.join(', ')}\n`);
      console.log(
        table(
          ['camera', 'observation key', 'shape', 'required'],
          spec.cameras.map((c) => [
            c.name,
            key(c.key),
            `[${c.shape.join(', ')}] ${c.layout}`,
            c.required ? 'yes' : 'no',
          ]),
        ),
      );
    });
}
