/**
 * Prometheus's text exposition format (version 0.0.4), as `vla serve` writes it on /metrics (see
 * serving/metrics.ts): samples with labels, histograms read back into buckets, and quantiles estimated
 * from bucket counts the way Prometheus's histogram_quantile does (linear inside a bucket).
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Histogram {
  /** Cumulative counts by upper bound, ascending, ending with +Inf. */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

export class PrometheusError extends Error {
  override name = 'PrometheusError';
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseValue(text: string, line: number): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  const v = Number(text);
  if (text === '' || Number.isNaN(v)) {
    throw new PrometheusError(
      `line ${line}: expected a number as the sample value, got ${JSON.stringify(text)}`,
    );
  }
  return v;
}

/** `{a="x",b="y\"z"}` from position `i` (at the brace); returns the labels and the position after. */
function parseLabels(text: string, i: number, line: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++;
  for (;;) {
    while (text[i] === ' ' || text[i] === ',') i++;
    if (text[i] === '}') return [labels, i + 1];
    const name = NAME.exec(text.slice(i))?.[0];
    if (!name || text[i + name.length] !== '=' || text[i + name.length + 1] !== '"') {
      throw new PrometheusError(
        `line ${line}: expected label="value", got ${JSON.stringify(text.slice(i, i + 30))}`,
      );
    }
    i += name.length + 2;
    let value = '';
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') {
        const next = text[i + 1];
        value += next === 'n' ? '\n' : (next ?? '');
        i += 2;
      } else value += text[i++];
    }
    if (i >= text.length) throw new PrometheusError(`line ${line}: label ${name} is not closed with a quote`);
    labels[name] = value;
    i++;
  }
}

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const name = NAME.exec(line)?.[0];
    if (!name)
      throw new PrometheusError(
        `line ${n + 1}: expected a metric name, got ${JSON.stringify(line.slice(0, 40))}`,
      );
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, n + 1);
    const [value] = line.slice(i).trim().split(/\s+/);
    samples.push({ name, labels, value: parseValue(value ?? '', n + 1) });
  }
  return samples;
}

/** The value of an unlabelled sample, or null when there is none. */
export function sampleValue(samples: Sample[], name: string): number | null {
  return samples.find((s) => s.name === name)?.value ?? null;
}

/** label value → sample value, for a labelled counter such as `vla_errors_total{kind}`. */
export function byLabel(samples: Sample[], name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples)
    if (s.name === name && s.labels[label] !== undefined) out[s.labels[label]!] = s.value;
  return out;
}

/** The histogram `name` (its _bucket, _sum and _count samples), or null when there is none. */
export function histogram(samples: Sample[], name: string): Histogram | null {
  const buckets = samples
    .filter((s) => s.name === `${name}_bucket` && s.labels.le !== undefined)
    .map((s) => ({ le: parseValue(s.labels.le!, 0), count: s.value }))
    .sort((a, b) => a.le - b.le);
  const count = sampleValue(samples, `${name}_count`);
  if (buckets.length === 0 || count === null) return null;
  return { buckets, sum: sampleValue(samples, `${name}_sum`) ?? 0, count };
}

/** What was observed between two readings of the same histogram (a restarted server: the later one). */
export function histogramDelta(before: Histogram | null, after: Histogram): Histogram {
  if (!before || before.count > after.count || before.buckets.length !== after.buckets.length) return after;
  return {
    buckets: after.buckets.map((b, i) => ({ le: b.le, count: b.count - before.buckets[i]!.count })),
    sum: after.sum - before.sum,
    count: after.count - before.count,
  };
}

/**
 * The q-quantile (0..1) of a histogram's observations, interpolating linearly inside the bucket it
 * falls in (the first bucket starts at 0); a quantile in the +Inf bucket is the highest finite bound.
 * Null with no observations.
 */
export function histogramQuantile(h: Histogram, q: number): number | null {
  const total = h.buckets.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (b.le === Number.POSITIVE_INFINITY) return prevLe;
      const inBucket = b.count - prevCount;
      return inBucket > 0 ? prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket : b.le;
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}
