import { appendFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { minMaxDownsample } from '../../src/dashboard/downsample.js';
import { Folders } from '../../src/dashboard/folders.js';
import type { HttpError } from '../../src/dashboard/http.js';
import {
  byLabel,
  histogram,
  histogramDelta,
  histogramQuantile,
  parsePrometheus,
  sampleValue,
} from '../../src/dashboard/prometheus.js';
import { pointsAfter, RunMetricsCache } from '../../src/dashboard/run-metrics.js';
import { parseRange } from '../../src/dashboard/send-file.js';
import { metricsUrlOf } from '../../src/dashboard/server-watch.js';
import { ServerMetrics } from '../../src/serving/metrics.js';

describe('min/max downsampling', () => {
  const n = 100_000;
  const xs = Float64Array.from({ length: n }, (_, i) => i + 1);
  const ys = Float64Array.from(
    { length: n },
    (_, i) => Math.sin(i / 500) + (i === 31_337 ? 40 : 0) - (i === 77_777 ? 9 : 0),
  );

  it('cuts 100,000 points to at most 2,000, keeping the ends and every spike', () => {
    const c = minMaxDownsample(xs, ys, 2000);
    expect(c.x.length).toBeLessThanOrEqual(2000);
    expect(c.x.length).toBeGreaterThan(1900);
    expect(c.x[0]).toBe(1);
    expect(c.x.at(-1)).toBe(n);
    expect(Math.max(...c.y)).toBe(ys[31_337]);
    expect(Math.min(...c.y)).toBe(ys[77_777]);
    expect(c.x).toEqual([...c.x].sort((a, b) => a - b));
  });

  it('returns a short curve as it is, and a window [from, to] inclusive', () => {
    expect(minMaxDownsample([1, 2, 3], [5, 6, 7], 2000)).toEqual({ x: [1, 2, 3], y: [5, 6, 7] });
    const w = minMaxDownsample(xs, ys, 2000, 500, 1500);
    expect(w.x[0]).toBe(500);
    expect(w.x.at(-1)).toBe(1500);
    expect(w.x.length).toBe(1001);
    expect(minMaxDownsample(xs, ys, 2000, 200_000, 300_000)).toEqual({ x: [], y: [] });
  });
});

describe('Prometheus text, as vla serve writes it', () => {
  const m = new ServerMetrics();
  m.requests = 120;
  m.connected = 3;
  m.connectionsTotal = 5;
  m.error('bad_observation');
  m.error('bad_observation');
  m.closed('idle_evicted');
  for (let i = 0; i < 100; i++) m.observeLatency(i < 90 ? 3 : 150);
  for (const b of [1, 4, 4, 8]) m.batchSize.observe(b);
  const samples = parsePrometheus(m.render());

  it('reads counters, labelled counters and gauges', () => {
    expect(sampleValue(samples, 'vla_requests_total')).toBe(120);
    expect(sampleValue(samples, 'vla_connected_clients')).toBe(3);
    expect(byLabel(samples, 'vla_errors_total', 'kind')).toEqual({ bad_observation: 2 });
    expect(byLabel(samples, 'vla_closed_connections_total', 'reason')).toEqual({ idle_evicted: 1 });
  });

  it('reads histograms back and estimates quantiles inside their buckets', () => {
    const h = histogram(samples, 'vla_request_latency_ms')!;
    expect(h.count).toBe(100);
    expect(h.buckets.at(-1)).toEqual({ le: Number.POSITIVE_INFINITY, count: 100 });
    const p50 = histogramQuantile(h, 0.5)!;
    expect(p50).toBeGreaterThan(2);
    expect(p50).toBeLessThanOrEqual(5);
    const p99 = histogramQuantile(h, 0.99)!;
    expect(p99).toBeGreaterThan(100);
    expect(p99).toBeLessThanOrEqual(200);
    const batch = histogram(samples, 'vla_batch_size')!;
    expect(batch.sum / batch.count).toBe(17 / 4);
  });

  it('takes the difference of two readings (a restarted server: the later one)', () => {
    const before = histogram(samples, 'vla_request_latency_ms')!;
    m.observeLatency(700);
    const after = histogram(parsePrometheus(m.render()), 'vla_request_latency_ms')!;
    const d = histogramDelta(before, after);
    expect(d.count).toBe(1);
    expect(histogramQuantile(d, 0.5)).toBeGreaterThan(500);
    expect(histogramDelta(after, before)).toBe(before);
    expect(histogramQuantile({ buckets: [{ le: 1, count: 0 }], sum: 0, count: 0 }, 0.5)).toBeNull();
  });

  it('reads escaped labels and refuses what is not the format, naming the line', () => {
    expect(parsePrometheus('a{x="q\\"t",y="n\\nl"} 2 1700000000\n')[0]).toEqual({
      name: 'a',
      labels: { x: 'q"t', y: 'n\nl' },
      value: 2,
    });
    expect(() => parsePrometheus('# ok\nvla_x 1\n<html>\n')).toThrow(
      /line 3: expected a metric name, got "<html>"/,
    );
    expect(() => parsePrometheus('vla_x one\n')).toThrow(
      /line 1: expected a number as the sample value, got "one"/,
    );
  });

  it('turns what vla serve prints into its /metrics URL', () => {
    expect(metricsUrlOf('ws://127.0.0.1:8000')).toBe('http://127.0.0.1:8000/metrics');
    expect(metricsUrlOf('http://10.0.0.2:8000/metrics')).toBe('http://10.0.0.2:8000/metrics');
    expect(() => metricsUrlOf('ftp://x')).toThrow(/server URL: expected ws:\/\/ or http:\/\//);
    expect(() => metricsUrlOf('not a url')).toThrow(
      /server URL: expected ws:\/\/HOST:PORT or http:\/\/HOST:PORT, got "not a url"/,
    );
  });
});

describe('byte ranges', () => {
  it.each([
    [undefined, null],
    ['bytes=0-99', [0, 99]],
    ['bytes=100-', [100, 999]],
    ['bytes=-100', [900, 999]],
    ['bytes=900-5000', [900, 999]],
    ['bytes=1000-', 'unsatisfiable'],
    ['bytes=5-2', 'unsatisfiable'],
    ['bytes=0-1,5-6', null],
    ['items=0-1', null],
  ])('%s of 1000 bytes → %j', (header, expected) => {
    expect(parseRange(header, 1000)).toEqual(expected);
  });
});

describe('the folders a request may name', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'vla-dashboard-folders-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'evals', 'run1'), { recursive: true });
  mkdirSync(path.join(root, 'other', 'evals'), { recursive: true });
  writeFileSync(path.join(root, 'secret.txt'), 'x');
  symlinkSync(path.join(root, 'secret.txt'), path.join(root, 'evals', 'run1', 'link.mp4'));
  const folders = new Folders([path.join(root, 'evals'), path.join(root, 'other', 'evals')]);

  const refusal = (requested: string) => {
    try {
      folders.resolve(requested, 'video');
    } catch (e) {
      return [(e as HttpError).status, (e as HttpError).message];
    }
    return null;
  };

  it('names each folder by its own name, two of one name apart', () => {
    expect(folders.list().map((f) => f.name)).toEqual(['evals', 'evals-2']);
    expect(folders.resolve('evals/run1', 'eval').file).toBe(path.join(root, 'evals', 'run1'));
    expect(folders.resolve('evals-2', 'eval').file).toBe(path.join(root, 'other', 'evals'));
    expect(folders.idOf(path.join(root, 'evals', 'run1'))).toBe('evals/run1');
    expect(folders.idOf(path.join(root, 'secret.txt'))).toBeNull();
  });

  it('refuses absolute paths (400), ".." (403), unknown folders (404) and links out (403), saying why', () => {
    expect(refusal('/etc/passwd')).toEqual([
      400,
      'video: expected a path relative to the dashboard\'s folders (evals, evals-2), got the absolute path "/etc/passwd"',
    ]);
    expect(refusal('evals/../secret.txt')).toEqual([
      403,
      'video: expected a path inside the dashboard\'s folders (evals, evals-2), got "evals/../secret.txt", which leads out of them with ".."',
    ]);
    expect(refusal('evals\\..\\..\\x')![0]).toBe(403);
    expect(refusal('C:\\Windows')![0]).toBe(400);
    expect(refusal('nope/x')).toEqual([
      404,
      'video: no folder named "nope" (the dashboard\'s folders: evals, evals-2)',
    ]);
    expect(refusal('evals/run1/link.mp4')).toEqual([
      403,
      'video: "evals/run1/link.mp4" is a link that leads out of the folder evals (' +
        path.join(root, 'evals') +
        ')',
    ]);
    expect(refusal('')![0]).toBe(400);
  });
});

describe("a run's metrics, read as the trainer appends them", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-dashboard-metrics-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const line = (step: number, fields: Record<string, number | string> = {}) =>
    `${JSON.stringify({ step, loss: 1 / step, lr: 1e-4, time: '2026-12-07T00:00:00Z', ...fields })}\n`;

  it('parses what was appended, merges a step’s lines, and waits for a line being written', () => {
    const file = path.join(dir, 'a.jsonl');
    writeFileSync(file, line(1) + line(2));
    const cache = new RunMetricsCache();
    const run = cache.read(file);
    expect([run.rows, run.firstStep, run.lastStep]).toEqual([2, 1, 2]);
    expect([...run.curves.keys()]).toEqual(['loss', 'lr']);
    // The periodic evaluation logs its own line at the step the trainer just logged.
    appendFileSync(file, line(3) + JSON.stringify({ step: 3, eval_pc_success: 40 }) + '\n{"step": 4, "lo');
    const more = cache.read(file);
    expect(more).toBe(run);
    expect([more.rows, more.lastStep]).toEqual([3, 3]);
    expect(more.curves.get('eval_pc_success')).toEqual({ x: [3], y: [40] });
    expect(pointsAfter(more, 2).loss).toEqual({ x: [3], y: [1 / 3] });
    appendFileSync(file, `ss": 0.25}\n${line(5)}`);
    expect(cache.read(file).curves.get('loss')!.x).toEqual([1, 2, 3, 4, 5]);
  });

  it('reads a resumed run whole, the later lines replacing the earlier, as vla jobs plot does', () => {
    const file = path.join(dir, 'b.jsonl');
    writeFileSync(file, line(1) + line(2) + line(3) + line(4));
    const cache = new RunMetricsCache();
    cache.read(file);
    appendFileSync(file, line(3, { loss: 9 }) + line(4, { loss: 8 }) + line(5, { loss: 7 }));
    const run = cache.read(file);
    expect(run.curves.get('loss')).toEqual({ x: [1, 2, 3, 4, 5], y: [1, 1 / 2, 9, 8, 7] });
    expect(run.rows).toBe(5);
    // A file started over (--overwrite) is read from its beginning.
    writeFileSync(file, line(1, { loss: 5 }));
    expect(cache.read(file).curves.get('loss')).toEqual({ x: [1], y: [5] });
  });

  it('names the line of a corrupt entry, counting the lines read before', () => {
    const file = path.join(dir, 'c.jsonl');
    writeFileSync(file, line(1) + line(2));
    const cache = new RunMetricsCache();
    cache.read(file);
    appendFileSync(file, `${line(3)}oops\n${line(4)}`);
    expect(() => cache.read(file)).toThrow(`${file}:4: expected a JSON object, got "oops"`);
  });
});
