// The default bus: one process, delivery is a synchronous function call.
import type { Bus, DeliverFn, Envelope } from './types.ts';
import type { Metrics } from '../ops/metrics.ts';

export class MemoryBus implements Bus {
  readonly kind = 'memory' as const;
  private deliver: DeliverFn | null = null;
  constructor(readonly nodeId: string, private readonly metrics?: Metrics) {}

  async start(deliver: DeliverFn): Promise<void> {
    this.deliver = deliver;
    this.metrics?.busUp.set(1);
  }

  publish(env: Envelope): void {
    this.deliver?.(env);
  }

  isUp(): boolean {
    return this.deliver !== null;
  }

  async close(): Promise<void> {
    this.deliver = null;
    this.metrics?.busUp.set(0);
  }
}
