// Terminal output: one write in xterm.js at a time, the rest queued here where it can be
// dropped, and acknowledged to the server (flow control) once parsed.
//
// A hidden tab's timers are throttled (to one wake-up a second, after five minutes to one
// a minute), and xterm.js parses on timers: acknowledging only parsed output would hold a
// build running in a background tab to a slice a second, or a minute. So a hidden tab
// acknowledges output on receipt and keeps up to `hiddenBacklog` of it unparsed; past that
// it drops it and, when shown again, reattaches (takeBehind()): the server replays the
// scrollback (and the terminal modes), as after any reconnect.
//
// No DOM here: the terminal, document.hidden and the socket come in as an OutputSink, so
// that web/test/output.test.mjs runs it under node.
import { encodeAck } from "./protocol";

export const ACK_EVERY = 64 * 1024; // bytes rendered before an ack goes out at once...
export const ACK_DELAY_MS = 100; // ...else this long after the first unacknowledged render
export const WRITE_SLICE = 16 * 1024; // bytes handed to xterm.js per write

export interface OutputSink {
  /** xterm.js's write: `done` once parsed. Looked up on every call (tests replace it). */
  write(data: Uint8Array | string, done: () => void): void;
  hidden(): boolean;
  /** The connection output is acknowledged on, or null. */
  current(): number | null;
  /** Send a text frame on the current connection; false when it is not open. */
  send(text: string): boolean;
}

interface Pending {
  readonly data: Uint8Array | string;
  readonly socket: number | null; // the connection to acknowledge it on; null: our own writes
  readonly acked: boolean; // acknowledged on receipt (a hidden tab), not once parsed
}

export class Output {
  private queue: Pending[] = [];
  private writing = false;
  private backlog = 0; // bytes from sockets in `queue` that were acknowledged on receipt
  private behind = false; // a hidden tab dropped output: it catches up from the scrollback
  private unacked = 0; // bytes rendered but not yet acknowledged
  private ackTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly sink: OutputSink,
    private readonly hiddenBacklog: number,
  ) {}

  /** Queue `data` for the terminal; `socket` null for the page's own writes. */
  show(data: Uint8Array | string, socket: number | null): void {
    const early = socket !== null && this.sink.hidden();
    if (early) {
      this.acknowledge(data.length);
      if (this.behind || this.backlog + data.length > this.hiddenBacklog) {
        this.behind = true;
        this.dropBacklog();
        return;
      }
      this.backlog += data.length;
    }
    if (typeof data === "string") {
      this.queue.push({ data, socket, acked: early });
    } else {
      // in slices, so that a flush leaves xterm.js little to finish
      for (let start = 0; start < data.length; start += WRITE_SLICE) {
        this.queue.push({ data: data.subarray(start, start + WRITE_SLICE), socket, acked: early });
      }
    }
    if (!this.writing) {
      this.writeNext();
    }
  }

  /** A new connection: the old one's output and acknowledgements are moot. */
  reset(): void {
    this.unacked = 0;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.queue = this.queue.filter((pending) => pending.socket === null);
    this.backlog = 0;
  }

  /** Ctrl-C flushed the tty: drop the current connection's unparsed output and
   * acknowledge it at once, as the tty dropped what it had queued. */
  discard(): void {
    const current = this.sink.current();
    let dropped = 0;
    this.queue = this.queue.filter((pending) => {
      if (pending.socket === null || pending.socket !== current) {
        return true;
      }
      if (pending.acked) {
        this.backlog = Math.max(0, this.backlog - pending.data.length);
      } else {
        dropped += pending.data.length;
      }
      return false;
    });
    if (dropped > 0) {
      this.acknowledge(dropped);
      this.flushAck();
    }
  }

  /** Shown again after dropping output while hidden: true once, when the page should
   * reattach for the scrollback. */
  takeBehind(): boolean {
    if (this.sink.hidden() || !this.behind) {
      return false;
    }
    this.behind = false;
    return true;
  }

  /** Drop the socket output acknowledged on receipt that is still waiting to be parsed. */
  private dropBacklog(): void {
    this.queue = this.queue.filter((pending) => !pending.acked);
    this.backlog = 0;
  }

  private writeNext(): void {
    const next = this.queue.shift();
    this.writing = next !== undefined;
    if (next === undefined) {
      return;
    }
    this.sink.write(next.data, () => {
      // Acknowledge once xterm.js has parsed them: that is what paces the server.
      if (next.acked) {
        this.backlog = Math.max(0, this.backlog - next.data.length);
      } else if (next.socket !== null && next.socket === this.sink.current()) {
        this.acknowledge(next.data.length);
      }
      this.writeNext();
    });
  }

  private acknowledge(bytes: number): void {
    this.unacked += bytes;
    if (this.unacked >= ACK_EVERY) {
      this.flushAck();
    } else if (this.ackTimer === undefined) {
      this.ackTimer = setTimeout(() => this.flushAck(), ACK_DELAY_MS);
    }
  }

  private flushAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.unacked > 0 && this.sink.send(encodeAck(this.unacked))) {
      this.unacked = 0;
    }
  }
}
