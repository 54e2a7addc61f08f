import { closeSync, existsSync, openSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import type { AsyncBuffer, FileMetaData, SchemaElement } from 'hyparquet';
import { parquetMetadataAsync, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { ColumnSource } from 'hyparquet-writer';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { UserError } from '../config/errors.js';

/** An opened parquet file: its footer parsed once, byte ranges read on demand. */
export interface ParquetFile {
  file: string;
  metadata: FileMetaData;
  buffer: AsyncBuffer;
  numRows: number;
  /** Top-level column names. */
  columns: string[];
}

function fileBuffer(file: string, size: number): AsyncBuffer {
  return {
    byteLength: size,
    slice(start: number, end = size) {
      const out = new Uint8Array(end - start);
      const fd = openSync(file, 'r');
      try {
        let done = 0;
        while (done < out.length) {
          const n = readSync(fd, out, done, out.length - done, start + done);
          if (n === 0) break;
          done += n;
        }
      } finally {
        closeSync(fd);
      }
      return out.buffer;
    },
  };
}

/** Opens a parquet file; a truncated or foreign file is reported with its path. */
export async function openParquet(file: string): Promise<ParquetFile> {
  if (!existsSync(file)) throw new UserError(`${file}: parquet file is missing`);
  const size = statSync(file).size;
  if (size < 12) throw new UserError(`${file}: not a parquet file (only ${size} bytes; truncated?)`);
  const buffer = fileBuffer(file, size);
  const tail = new Uint8Array(buffer.slice(size - 4, size) as ArrayBuffer);
  const magic = String.fromCharCode(...tail);
  if (magic !== 'PAR1') {
    throw new UserError(
      `${file}: not a parquet file or truncated (footer ends in ${JSON.stringify(magic)}, expected "PAR1")`,
    );
  }
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new UserError(`${file}: unreadable parquet footer (${(e as Error).message})`);
  }
  const root = metadata.schema[0]!;
  const columns: string[] = [];
  // Walk the flattened schema to collect the root's direct children.
  let i = 1;
  const skip = (): void => {
    const el = metadata.schema[i++]!;
    for (let c = 0; c < (el.num_children ?? 0); c++) skip();
  };
  for (let c = 0; c < (root.num_children ?? 0); c++) {
    columns.push(metadata.schema[i]!.name);
    skip();
  }
  return { file, metadata, buffer, numRows: Number(metadata.num_rows), columns };
}

/** Reads whole columns over [rowStart, rowEnd): one array of values per requested column. */
export async function readColumns(
  pq: ParquetFile,
  columns: string[],
  rowStart = 0,
  rowEnd = pq.numRows,
): Promise<Record<string, unknown[]>> {
  for (const c of columns) {
    if (!pq.columns.includes(c)) {
      throw new UserError(`${pq.file}: column "${c}" is missing (columns: ${pq.columns.join(', ')})`);
    }
  }
  let rows: unknown[][] = [];
  try {
    await parquetRead({
      file: pq.buffer,
      metadata: pq.metadata,
      columns,
      rowStart,
      rowEnd,
      compressors,
      utf8: false,
      onComplete: (r: unknown[][]) => {
        rows = r;
      },
    });
  } catch (e) {
    throw new UserError(
      `${pq.file}: cannot read rows ${rowStart}..${rowEnd} (${(e as Error).message}; truncated or corrupt?)`,
    );
  }
  if (rows.length !== rowEnd - rowStart) {
    throw new UserError(
      `${pq.file}: expected ${rowEnd - rowStart} rows from ${rowStart}, got ${rows.length}`,
    );
  }
  const out: Record<string, unknown[]> = {};
  for (const [j, c] of columns.entries()) out[c] = rows.map((r) => r[j]);
  return out;
}

export const toNumber = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : (v as number));

export const text = (v: unknown): string =>
  typeof v === 'string' ? v : v instanceof Uint8Array ? new TextDecoder().decode(v) : String(v);

/** A list column (a LeRobot vector feature, or v3.0's per-episode task list) as its schema elements. */
export function listSchema(name: string, type: 'FLOAT' | 'DOUBLE' | 'INT64' | 'STRING'): SchemaElement[] {
  return [
    {
      name,
      repetition_type: 'OPTIONAL',
      num_children: 1,
      converted_type: 'LIST',
      logical_type: { type: 'LIST' },
    },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    ...scalarSchema('element', type),
  ];
}

/** HF `datasets`' Image feature: a struct of PNG bytes and an optional path. */
export function imageSchema(name: string): SchemaElement[] {
  return [
    { name, repetition_type: 'OPTIONAL', num_children: 2 },
    { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
    { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  ];
}

export function scalarSchema(name: string, type: 'FLOAT' | 'DOUBLE' | 'INT64' | 'STRING'): SchemaElement[] {
  if (type === 'STRING') {
    return [
      {
        name,
        type: 'BYTE_ARRAY',
        converted_type: 'UTF8',
        logical_type: { type: 'STRING' },
        repetition_type: 'OPTIONAL',
      },
    ];
  }
  return [{ name, type, repetition_type: 'OPTIONAL' }];
}

/**
 * Writes a parquet file atomically (temporary file, then rename), with the given row group sizes
 * (one per episode in LeRobot's layout). Compression is snappy, as LeRobot writes.
 */
export function writeParquet(
  file: string,
  columns: Array<{ schema: SchemaElement[]; data: ColumnSource['data'] }>,
  rowGroups: number[],
  /** Key-value metadata, such as the `huggingface` features that `datasets` reads back. */
  kv: Record<string, string> = {},
): void {
  const schema: SchemaElement[] = [
    { name: 'schema', repetition_type: 'REQUIRED', num_children: columns.length },
  ];
  for (const c of columns) schema.push(...c.schema);
  const buf = parquetWriteBuffer({
    // hyparquet-writer bundles its own hyparquet: the schema types are the same shape, not the same type.
    schema: schema as NonNullable<Parameters<typeof parquetWriteBuffer>[0]['schema']>,
    columnData: columns.map((c) => ({ name: c.schema[0]!.name, data: c.data })),
    rowGroupSize: rowGroups.length > 0 ? rowGroups : [1],
    codec: 'SNAPPY',
    createdBy: 'vla-orchestrator',
    kvMetadata: Object.entries(kv).map(([key, value]) => ({ key, value })),
  });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, new Uint8Array(buf));
  renameSync(tmp, file);
}
