/**
 * Bytes of incoming messages held at once, across every connection. Each connection may send up to
 * the message limit, but 64 robots each half-way through a 16 MB message would hold a gigabyte; past
 * the budget, the connection whose bytes would pass it is refused (the others keep theirs), so what
 * the server holds while receiving stays near the budget whatever the clients do.
 */
import type { Duplex } from 'node:stream';

export class ReceiveBudget {
  private total = 0;
  private readonly held = new Map<Duplex, number>();

  constructor(readonly limitBytes: number) {}

  get heldBytes(): number {
    return this.total;
  }

  /**
   * Counts what `socket` receives until `messageDone` or `release`; calls `over` (once) when a chunk
   * takes the total past the budget. Listens ahead of ws, so a chunk is counted before ws can finish a
   * message with it.
   */
  track(socket: Duplex, over: () => void): { messageDone(): void; release(): void } {
    this.held.set(socket, 0);
    let refused = false;
    socket.prependListener('data', (chunk: Buffer) => {
      const mine = this.held.get(socket);
      if (mine === undefined) return;
      this.held.set(socket, mine + chunk.length);
      this.total += chunk.length;
      if (this.total > this.limitBytes && !refused) {
        refused = true;
        over();
      }
    });
    const drop = (keep: boolean) => {
      const mine = this.held.get(socket);
      if (mine === undefined) return;
      this.total -= mine;
      if (keep) this.held.set(socket, 0);
      else this.held.delete(socket);
    };
    return { messageDone: () => drop(true), release: () => drop(false) };
  }
}
