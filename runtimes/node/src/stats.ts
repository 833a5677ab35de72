/**
 * Per-version call statistics: one-second windows published (QoS 0) to `mesh/stats/{svc}/v{N}/{podId}`
 * in the shape of runtimes/python/dormant_runtime/stats.py, which the rollout controller, the autoscaler
 * and `dormant status` read: `{"service", "version", "pod", "at", "seconds", "calls", "ok", "errors",
 * "latency": {"le", "counts"}, "peakRssMb", "functions", "started", "initSeconds", "inFlight",
 * "rssBytes"}`.
 */

export const BOUNDS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000];
const THROTTLED = "Throttled";
const UNKNOWN_FUNCTION = "(unknown)";

function bucketOf(ms: number): number {
  // bisect_left: the first bound >= ms
  let i = 0;
  while (i < BOUNDS_MS.length && BOUNDS_MS[i] < ms) i++;
  return i;
}

class FunctionWindow {
  calls = 0;
  ok = 0;
  errors: Record<string, number> = {};
  counts = new Array<number>(BOUNDS_MS.length + 1).fill(0);
  sumMs = 0;

  toJson(): Record<string, unknown> {
    return { calls: this.calls, ok: this.ok, errors: this.errors, counts: this.counts, sumMs: Math.round(this.sumMs * 1000) / 1000 };
  }
}

let peakRss = 0;

function rss(): number {
  const now = process.memoryUsage.rss();
  peakRss = Math.max(peakRss, now);
  return now;
}

export class CallStats {
  private calls = 0;
  private ok = 0;
  private errors: Record<string, number> = {};
  private counts = new Array<number>(BOUNDS_MS.length + 1).fill(0);
  private functions = new Map<string, FunctionWindow>();
  private opened = Date.now() / 1000;
  started: number | null = null;
  initSeconds: number | null = null;
  inFlight: () => number = () => 0;
  declared: ReadonlySet<string> | null = null;

  /** Count one answered call of `fn`, `startedAt` being when its request arrived (performance.now()). */
  record(ok: boolean, errorType: string | null, fn: string, startedAt: number): void {
    const latency = performance.now() - startedAt;
    const bucket = bucketOf(latency);
    if (this.declared !== null && !this.declared.has(fn)) fn = UNKNOWN_FUNCTION;
    let window = this.functions.get(fn);
    if (window === undefined) {
      window = new FunctionWindow();
      this.functions.set(fn, window);
    }
    this.calls++;
    window.calls++;
    if (ok) {
      this.ok++;
      window.ok++;
    } else {
      const kind = errorType ?? "SystemError";
      this.errors[kind] = (this.errors[kind] ?? 0) + 1;
      window.errors[kind] = (window.errors[kind] ?? 0) + 1;
      if (kind === THROTTLED) {
        this.counts[bucket]++;
        return;
      }
    }
    this.counts[bucket]++;
    window.counts[bucket]++;
    window.sumMs += latency;
  }

  /** The window so far, and start a new one. */
  take(service: string, version: number, pod: string): Record<string, unknown> {
    const now = Date.now() / 1000;
    const current = rss();
    const window = {
      service,
      version,
      pod,
      at: this.opened,
      seconds: Math.round((now - this.opened) * 1000) / 1000,
      calls: this.calls,
      ok: this.ok,
      errors: this.errors,
      latency: { le: BOUNDS_MS, counts: this.counts },
      peakRssMb: Math.round((peakRss / (1024 * 1024)) * 10) / 10,
      functions: Object.fromEntries([...this.functions].map(([name, fw]) => [name, fw.toJson()])),
      started: this.started,
      initSeconds: this.initSeconds,
      inFlight: this.inFlight(),
      rssBytes: current,
    };
    this.calls = 0;
    this.ok = 0;
    this.errors = {};
    this.counts = new Array<number>(BOUNDS_MS.length + 1).fill(0);
    this.functions = new Map();
    this.opened = now;
    return window;
  }
}
