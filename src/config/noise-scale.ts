/**
 * The largest `model.noise_scale` (and `--noise-scale`) accepted: in a file of its own, without the
 * schema's zod, so that the CLI can check the flag and print its help without loading the schemas.
 */
export const MAX_NOISE_SCALE = 4;
