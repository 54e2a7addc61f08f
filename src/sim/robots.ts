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
  /** What a gripper value of 1 means: ALOHA's 1 is open, DROID's 1 is closed. */
  gripperOne: 'open' | 'closed';
}

/** The gripper's state/action value for an opening fraction (1 = fully open), in the arm's convention; its own inverse. */
export const gripperValue = (arm: ArmDef, openFraction: number): number =>
  arm.gripperOne === 'open' ? openFraction : 1 - openFraction;

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

export const mjcf = (name: string) => path.join(PACKAGE_ROOT, 'robots', 'mjcf', `${name}.xml`);

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
  gripperOne: 'open',
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

const PANDA_JOINTS = ['joint1', 'joint2', 'joint3', 'joint4', 'joint5', 'joint6', 'joint7'];

export const SINGLE_ARM_SIM: SimRobot = {
  name: 'single_arm_sim',
  mjcf: mjcf('single_arm_sim'),
  controlHz: 15,
  substeps: 33,
  arms: [
    {
      joints: PANDA_JOINTS,
      actuators: PANDA_JOINTS,
      site: 'grip',
      fingers: ['finger_left', 'finger_right'],
      fingerActuators: ['finger_left', 'finger_right'],
      fingerOpen: 0.04,
      // Franka's "ready" pose: gripper above the table pointing down.
      home: [0, -0.785, 0, -2.356, 0, 1.571, 0.785],
      gripperOne: 'closed',
    },
  ],
  cameras: { exterior_image_1_left: 'exterior', wrist_image_left: 'wrist' },
  actionModes: ['joint_position', 'joint_velocity'],
};

export const SIM_ROBOTS: Record<string, SimRobot> = { aloha_sim: ALOHA_SIM, single_arm_sim: SINGLE_ARM_SIM };
