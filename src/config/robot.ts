import { z } from 'zod';

/**
 * Where a value sits in an openpi observation: a flat key (`observation/joint_position`, keys with `/`
 * are not nested) or a path through nested maps (`[images, cam_high]`).
 */
export const ObsKey = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);
export type ObsKey = z.infer<typeof ObsKey>;

const StatePart = z.strictObject({
  key: ObsKey,
  dim: z.int().positive(),
  /** openpi's DROID client sends the gripper as a numpy scalar or a 1-element array. */
  scalar_ok: z.boolean().default(false),
});

const Camera = z.strictObject({
  name: z.string().min(1),
  key: ObsKey,
  /** The shape robot clients send. Either layout is accepted on the wire; this one is the documented one. */
  shape: z.tuple([z.int().positive(), z.int().positive(), z.int().positive()]),
  layout: z.enum(['hwc', 'chw']),
  required: z.boolean().default(false),
});

export const RobotSpec = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().default(''),
    control_hz: z.number().positive(),
    state: z.strictObject({
      names: z.array(z.string().min(1)).min(1),
      parts: z.array(StatePart).min(1),
    }),
    action: z.strictObject({
      names: z.array(z.string().min(1)).min(1),
    }),
    cameras: z.array(Camera).min(1),
    prompt_key: ObsKey.default('prompt'),
    simulated: z.boolean().default(false),
  })
  .superRefine((spec, ctx) => {
    const partsDim = spec.state.parts.reduce((n, p) => n + p.dim, 0);
    if (partsDim !== spec.state.names.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['state', 'parts'],
        message: `state parts add up to ${partsDim} dims but state.names lists ${spec.state.names.length}`,
      });
    }
    const cams = new Set<string>();
    for (const [i, cam] of spec.cameras.entries()) {
      if (cams.has(cam.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', i, 'name'],
          message: `duplicate camera ${cam.name}`,
        });
      }
      cams.add(cam.name);
      const channels = cam.layout === 'chw' ? cam.shape[0] : cam.shape[2];
      if (channels !== 3) {
        ctx.addIssue({
          code: 'custom',
          path: ['cameras', i, 'shape'],
          message: `expected 3 colour channels for layout ${cam.layout}, got shape [${cam.shape.join(', ')}]`,
        });
      }
    }
  });
export type RobotSpec = z.infer<typeof RobotSpec>;

export const stateDim = (spec: RobotSpec): number => spec.state.names.length;
export const actionDim = (spec: RobotSpec): number => spec.action.names.length;
