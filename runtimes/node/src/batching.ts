/**
 * `Batcher`: coalesce concurrent requests into one call of a batch function. Requests queued while a
 * batch is in flight go out together in the next one, so an idle runtime pays one round trip per
 * request and a busy one pays one per batch (at most 500 items).
 */

const MAX_BATCH = 500;

interface Pending<K, R> {
  item: K;
  resolve: (value: R) => void;
  reject: (reason: unknown) => void;
}

export class Batcher<K, R> {
  private pending: Pending<K, R>[] = [];
  private running = false;

  constructor(private readonly run: (items: K[]) => Promise<R[]>) {}

  submit(item: K): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        queueMicrotask(() => void this.loop());
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, MAX_BATCH);
        let results: R[];
        try {
          results = await this.run(batch.map((p) => p.item));
        } catch (exc) {
          for (const p of batch) p.reject(exc);
          continue;
        }
        batch.forEach((p, i) => p.resolve(results[i]));
      }
    } finally {
      this.running = false;
    }
  }
}
