/**
 * The function's memory limit (`memory_mb` of the Load command, `--memory-mb` standalone): what the
 * process may hold beyond what it held when the limit was set, as in the Python runtime
 * (runtimes/python/dormant_runtime/limits.py).
 *
 * Python sets RLIMIT_DATA, and the allocation that crosses it raises MemoryError in the handler. V8
 * cannot take that: an allocation the kernel refuses aborts the whole process, so the Node runtime
 * watches its resident set instead (every WATCH_MS, and after every call). The call running when it goes
 * past the limit is cut off and answered `SystemError` with `details.memoryLimitMb`, and the process then
 * exits (EXIT_OUT_OF_MEMORY) for the pod to start a fresh one, as the Python runtime does; the other calls
 * in flight are unacknowledged and are delivered again, to that new runtime.
 */

export const EXIT_OUT_OF_MEMORY = 3;
export const WATCH_MS = 50;
const MIB = 1024 * 1024;

/** The error a call is cut off with when the process went past its limit. */
export class MemoryExceeded extends Error {}

export class MemoryLimit {
  readonly limitBytes: number;
  private peak: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly waiters = new Set<(error: MemoryExceeded) => void>();
  tripped = false;

  constructor(
    readonly memoryMb: number,
    private readonly rss: () => number = () => process.memoryUsage.rss(),
  ) {
    const held = this.rss();
    this.peak = held;
    this.limitBytes = held + memoryMb * MIB;
  }

  /** Look now: whether the process holds more than its limit (remembered once true). */
  check(): boolean {
    const now = this.rss();
    if (now > this.peak) this.peak = now;
    if (!this.tripped && now > this.limitBytes) {
      this.tripped = true;
      const error = new MemoryExceeded(`went past the memory limit of ${this.memoryMb} MB`);
      for (const reject of this.waiters) reject(error);
      this.waiters.clear();
    }
    return this.tripped;
  }

  get peakRssMb(): number {
    return Math.round((this.peak / MIB) * 10) / 10;
  }

  /** A promise that rejects when the limit is crossed (raced against a handler); `release` when done. */
  cutoff(): { promise: Promise<never>; release: () => void } {
    let reject!: (error: MemoryExceeded) => void;
    const promise = new Promise<never>((_, fail) => (reject = fail));
    promise.catch(() => undefined); // a call that finished first never looks at it
    if (this.tripped) {
      reject(new MemoryExceeded(`went past the memory limit of ${this.memoryMb} MB`));
      return { promise, release: () => undefined };
    }
    this.waiters.add(reject);
    return { promise, release: () => this.waiters.delete(reject) };
  }

  /** Watch every WATCH_MS while calls run (the timer does not keep the process alive). */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.check(), WATCH_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
