import { renameSync, writeFileSync } from 'node:fs';
import { encode } from 'fast-png';

/** Write an HWC RGB frame as a PNG, atomically. */
export function writePng(file: string, rgb: Uint8Array, width: number, height: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, encode({ width, height, data: rgb, channels: 3, depth: 8 }));
  renameSync(tmp, file);
}
