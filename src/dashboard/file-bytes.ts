/** Part of a file read at once: what a log or a metrics file gained since it was last read. */
import { closeSync, openSync, readSync } from 'node:fs';

/** The bytes of `file` from `start` to `end` (fewer when it is shorter now). */
export function readBytes(file: string, start: number, end: number): Buffer {
  const buf = Buffer.alloc(Math.max(0, end - start));
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, start + done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}
