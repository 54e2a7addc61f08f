/**
 * The simulated robots: which MJCF they load, how their joints map to the state and action vectors of
 * their robot spec (robots/<name>.yaml), and which MJCF camera serves which spec camera.
 */
import path from 'node:path';
import { PACKAGE_ROOT } from '../config/load.js';

export interface ArmDef {
  /** Hinge joints in state/action order. */
  joints: string[];
  /** Their position actuators, same order. */
  actuators: string[];
  /** The end-effector site IK drives (between the finger pads). */
  site: string;
  /** Finger slide joints; the gripper value is the first one's opening over `fingerOpen`. */
  fingers: string[];
  fingerActuators: string[];
  /** Finger joint value at gripper = 1 (open); 0 is closed. */
  fingerOpen: number;
  /** Joint values an episode starts from. */
  home: number[];
}

export interface SimRobot {
  name: string;
  mjcf: string;
  controlHz: number;
  substeps: number;
  arms: ArmDef[];
  /** Spec camera name → MJCF camera name. */
  cameras: Record<string, string>;
  /** Joint-position actions are absolute targets; joint-velocity actions (rad/s) are integrated over one step. */
  actionModes: Array<'joint_position' | 'joint_velocity'>;
}

const mjcf = (name: string) => path.join(PACKAGE_ROOT, 'robots', 'mjcf', `${name}.xml`);

const VX_JOINTS = ['waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate'];
/** ALOHA's resting pose: gripper in front of the base, pointing down and forward. */
const VX_HOME = [0, -0.6, 0.9, 0, 0.7, 0];

const vxArm = (prefix: string): ArmDef => ({
  joints: VX_JOINTS.map((j) => prefix + j),
  actuators: VX_JOINTS.map((j) => prefix + j),
  site: `${prefix}grip`,
  fingers: [`${prefix}finger_left`, `${prefix}finger_right`],
  fingerActuators: [`${prefix}finger_left`, `${prefix}finger_right`],
  fingerOpen: 0.045,
  home: VX_HOME,
});

export const ALOHA_SIM: SimRobot = {
  name: 'aloha_sim',
  mjcf: mjcf('aloha_sim'),
  controlHz: 50,
  substeps: 10,
  // State and action order is ALOHA's: left arm then right arm.
  arms: [vxArm('left/'), vxArm('right/')],
  cameras: { cam_high: 'cam_high', cam_left_wrist: 'left/wrist_cam', cam_right_wrist: 'right/wrist_cam' },
  actionModes: ['joint_position'],
};

export const SIM_ROBOTS: Record<string, SimRobot> = { aloha_sim: ALOHA_SIM };
