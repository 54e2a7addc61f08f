/** Server counters in Prometheus's text exposition format, for GET /metrics. */

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: number[],
  ) {
    this.counts = new Array(bounds.length).fill(0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]!) this.counts[i]!++;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.bounds.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    );
    return lines.join('\n');
  }
}

export class ServerMetrics {
  requests = 0;
  /** Client faults, each counted once per connection (the connection ends with it). */
  readonly errors = new Map<string, number>();
  /** Connections the server closed that did nothing wrong (idle while the server was full, dead peers). */
  readonly closes = new Map<string, number>();
  connected = 0;
  connectionsTotal = 0;
  readonly latency = new Histogram(
    'vla_request_latency_ms',
    'Time from a request arriving to its reply being sent, in milliseconds.',
    [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
  );
  readonly batchSize = new Histogram('vla_batch_size', 'Requests per policy call.', [1, 2, 4, 8, 16, 32, 64]);

  /** The most recent request latencies (ms), for quantiles in summaries; the histogram keeps the rest. */
  private readonly recent: number[] = [];

  observeLatency(ms: number): void {
    this.latency.observe(ms);
    this.recent.push(ms);
    if (this.recent.length > 10_000) this.recent.splice(0, this.recent.length - 10_000);
  }

  /** Quantile q (0..1) of the recent latencies, NaN when there are none. */
  latencyQuantile(q: number): number {
    if (this.recent.length === 0) return Number.NaN;
    const sorted = [...this.recent].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  }

  error(kind: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  closed(reason: string): void {
    this.closes.set(reason, (this.closes.get(reason) ?? 0) + 1);
  }

  render(): string {
    const errors = [...this.errors].map(([kind, n]) => `vla_errors_total{kind="${kind}"} ${n}`);
    const closes = [...this.closes].map(
      ([reason, n]) => `vla_closed_connections_total{reason="${reason}"} ${n}`,
    );
    return `${[
      '# HELP vla_requests_total Inference requests answered.',
      '# TYPE vla_requests_total counter',
      `vla_requests_total ${this.requests}`,
      '# HELP vla_errors_total Requests or connections refused or failed, by kind.',
      '# TYPE vla_errors_total counter',
      ...errors,
      '# HELP vla_connected_clients WebSocket clients connected now.',
      '# TYPE vla_connected_clients gauge',
      `vla_connected_clients ${this.connected}`,
      '# HELP vla_connections_total WebSocket connections accepted.',
      '# TYPE vla_connections_total counter',
      `vla_connections_total ${this.connectionsTotal}`,
      '# HELP vla_closed_connections_total Connections the server closed without a client fault, by reason.',
      '# TYPE vla_closed_connections_total counter',
      ...closes,
      this.latency.render(),
      this.batchSize.render(),
    ].join('\n')}\n`;
  }
}
