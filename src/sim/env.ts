/**
 * A simulated episode: a robot (its MJCF and joint layout), a task (object placement, reward, success)
 * and optionally cameras. Actions and states are the robot spec's vectors (ALOHA: 14 dims, DROID-like:
 * 8), so the same numbers go to datasets, policies and the simulator.
 */
import { UserError } from '../config/errors.js';
import { Sim } from './mujoco.js';
import { specCameraRenderer } from './render.js';
import { Rng } from './rng.js';
import { gripperValue, type SimRobot } from './robots.js';

export interface SimObservation {
  /** Joint positions (radians) with each gripper as 0 (closed) .. 1 (open), in the spec's order. */
  state: Float32Array;
  /** HWC RGB frames by spec camera name; empty when the env renders nothing. */
  images: Record<string, Uint8Array>;
  prompt: string;
}

export interface StepResult {
  obs: SimObservation;
  reward: number;
}

/** What a task needs from the world; tasks never touch mujoco-js directly. */
export interface Task {
  name: string;
  description: string;
  robot: SimRobot;
  /** The MJCF scene when it is not the robot's own (the same arms with other objects). */
  scene?: string;
  /** Steps in an episode (gym-aloha: 400 at 50 Hz). */
  episodeSteps: number;
  maxReward: number;
  /** Place objects for this seed (the arms are already home); returns the episode's prompt. */
  reset(env: SimEnv, rng: Rng): string;
  reward(env: SimEnv): number;
  /**
   * For language-conditioned tasks: another instruction for the same scene (the reward follows the
   * prompt the env holds), so an eval can check that the policy reads its prompt.
   */
  swapPrompt?(prompt: string): string;
}

export interface EnvOptions {
  /** Spec cameras to render into observations (none by default: experts need no pixels). */
  cameras?: string[];
  /** Frame size for those cameras (224×224 unless given). */
  width?: number;
  height?: number;
  actionMode?: 'joint_position' | 'joint_velocity';
  /** Give every episode the task's swapped prompt instead of its own (see Task.swapPrompt). */
  swapPrompts?: boolean;
}

/** The MJCF file a task runs in: its own scene, else its robot's. */
export const sceneFile = (task: Task): string => task.scene ?? task.robot.mjcf;

export class SimEnv {
  private readonly armQadr: number[][];
  private readonly fingerQadr: number[][];
  private readonly ctrl: Float64Array;
  private readonly ctrlIndex: number[][];
  private readonly fingerCtrlIndex: number[][];
  private readonly target: Float64Array;
  private readonly draw: (camera: string) => Uint8Array;
  prompt = '';
  stepCount = 0;
  readonly dim: number;

  private constructor(
    readonly task: Task,
    readonly sim: Sim,
    private readonly opts: EnvOptions,
  ) {
    if (opts.swapPrompts && !task.swapPrompt) {
      throw new UserError(
        `--swap-prompts: task ${task.name} has one instruction; only language-conditioned tasks can swap it`,
      );
    }
    const robot = task.robot;
    this.armQadr = robot.arms.map((a) => a.joints.map((j) => sim.jointQposAdr(j)));
    this.fingerQadr = robot.arms.map((a) => a.fingers.map((j) => sim.jointQposAdr(j)));
    this.ctrlIndex = robot.arms.map((a) => a.actuators.map((n) => sim.id('actuator', n)));
    this.fingerCtrlIndex = robot.arms.map((a) => a.fingerActuators.map((n) => sim.id('actuator', n)));
    this.ctrl = new Float64Array(sim.nu);
    this.dim = robot.arms.reduce((n, a) => n + a.joints.length + 1, 0);
    this.target = new Float64Array(this.dim);
    const mode = opts.actionMode ?? 'joint_position';
    if (!robot.actionModes.includes(mode)) {
      throw new UserError(`action mode ${mode}: robot ${robot.name} accepts ${robot.actionModes.join(', ')}`);
    }
    for (const cam of opts.cameras ?? []) {
      if (!(cam in robot.cameras)) {
        throw new UserError(
          `camera ${cam}: robot ${robot.name} has ${Object.keys(robot.cameras).join(', ')}`,
        );
      }
    }
    this.draw = specCameraRenderer(sim, robot.cameras, this.width, this.height);
  }

  static async create(task: Task, opts: EnvOptions = {}): Promise<SimEnv> {
    const sim = await Sim.fromFile(sceneFile(task));
    try {
      return new SimEnv(task, sim, opts);
    } catch (e) {
      sim.free();
      throw e;
    }
  }

  /** The MJCF file this env was compiled from. */
  get scene(): string {
    return sceneFile(this.task);
  }
  get robot(): SimRobot {
    return this.task.robot;
  }
  get cameras(): string[] {
    return this.opts.cameras ?? [];
  }
  get width(): number {
    return this.opts.width ?? 224;
  }
  get height(): number {
    return this.opts.height ?? 224;
  }
  /** Any spec camera drawn now, whether or not observations carry it (videos of expert runs). */
  render(camera: string): Uint8Array {
    return this.draw(camera);
  }
  get controlDt(): number {
    return 1 / this.robot.controlHz;
  }

  reset(seed: number): SimObservation {
    this.sim.reset();
    this.robot.arms.forEach((arm, a) => {
      arm.joints.forEach((_, j) => {
        this.sim.setQpos([arm.home[j]!], this.armQadr[a]![j]);
      });
      for (const adr of this.fingerQadr[a]!) this.sim.setQpos([arm.fingerOpen], adr);
    });
    this.sim.forward();
    const prompt = this.task.reset(this, new Rng(seed));
    this.prompt = this.opts.swapPrompts ? this.task.swapPrompt!(prompt) : prompt;
    this.sim.setQvelZero();
    this.sim.forward();
    this.stepCount = 0;
    this.target.set(this.state());
    return this.observe();
  }

  /** The robot state vector (see SimObservation.state). */
  state(): Float32Array {
    const q = this.sim.qpos();
    const out = new Float32Array(this.dim);
    let k = 0;
    this.robot.arms.forEach((arm, a) => {
      for (const adr of this.armQadr[a]!) out[k++] = q[adr]!;
      out[k++] = gripperValue(arm, Math.min(1, Math.max(0, q[this.fingerQadr[a]![0]!]! / arm.fingerOpen)));
    });
    return out;
  }

  observe(): SimObservation {
    const images: Record<string, Uint8Array> = {};
    for (const cam of this.cameras) images[cam] = this.draw(cam);
    return { state: this.state(), images, prompt: this.prompt };
  }

  step(action: ArrayLike<number>): StepResult {
    if (action.length !== this.dim) {
      throw new UserError(
        `action has ${action.length} values; ${this.robot.name} expects ${this.dim} (${this.robot.arms.length} arm(s) of joints + gripper)`,
      );
    }
    for (let i = 0; i < action.length; i++) {
      if (!Number.isFinite(action[i]!))
        throw new UserError(`action[${i}] is ${action[i]}, expected a finite number`);
    }
    const velocity = this.opts.actionMode === 'joint_velocity';
    let k = 0;
    this.robot.arms.forEach((arm, a) => {
      for (let j = 0; j < arm.joints.length; j++, k++) {
        this.target[k] = velocity ? this.target[k]! + action[k]! * this.controlDt : action[k]!;
        this.ctrl[this.ctrlIndex[a]![j]!] = this.target[k]!;
      }
      const g = Math.min(1, Math.max(0, action[k]!));
      this.target[k++] = g;
      for (const c of this.fingerCtrlIndex[a]!) this.ctrl[c] = gripperValue(arm, g) * arm.fingerOpen;
    });
    this.sim.step(this.ctrl, this.robot.substeps);
    this.stepCount++;
    return { obs: this.observe(), reward: this.task.reward(this) };
  }

  /** Whether any geom of `a` touches any geom of `b` (ids). */
  touching(a: ReadonlySet<number>, b: ReadonlySet<number>): boolean {
    for (const c of this.sim.contacts()) {
      if ((a.has(c.geom1) && b.has(c.geom2)) || (a.has(c.geom2) && b.has(c.geom1))) return true;
    }
    return false;
  }

  /** Geom ids by name, for contact tests. */
  geoms(...names: string[]): Set<number> {
    return new Set(names.map((n) => this.sim.id('geom', n)));
  }

  /** Put a free-jointed body at a position with a yaw (radians). */
  placeFree(joint: string, pos: [number, number, number], yaw = 0): void {
    const adr = this.sim.jointQposAdr(joint);
    this.sim.setQpos([...pos, Math.cos(yaw / 2), 0, 0, Math.sin(yaw / 2)], adr);
  }

  free(): void {
    this.sim.free();
  }
}
