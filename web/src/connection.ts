// One WebSocket to a terminal, with its watchdog and keepalive. It reports what it hears
// (output, decoded control messages, one close) until it is closed from here; after that
// it is silent, so a replaced socket's late frames and close are never news.
import {
  CLOSED_ABNORMALLY,
  CloseCode,
  type ServerMessage,
  decodeServerMessage,
  encodePing,
  subprotocolsFor,
} from "./protocol";

export const HELLO_TIMEOUT_MS = 20_000; // a socket that has not said hello by then is given up
export const KEEPALIVE_MS = 25_000; // a ping keeps idle-timeout proxies (nginx: 60 s) from cutting us
export const PONG_TIMEOUT_MS = 10_000; // nothing at all heard this long after a ping: the path is dead
export const LATE_MS = 1_000; // a check this late means the page slept or was busy: ask once more
export const INPUT_CHUNK = 64 * 1024; // bytes per input frame; the server refuses frames over 1 MiB

export interface Timing {
  readonly keepaliveMs: number;
  readonly pongTimeoutMs: number;
}

export interface ConnectionEvents {
  output(bytes: Uint8Array): void;
  message(message: ServerMessage): void;
  /** The socket closed, or went silent (then 1006): reported once, never after close(). */
  closed(code: number, reason: string): void;
}

export class Connection {
  readonly ws: WebSocket;
  private done = false;
  private watchdog: number | undefined; // gives up on a socket that has gone silent
  private secondChance = false; // the watchdog fired late once and pinged again
  private keepalive: number | undefined;

  constructor(
    readonly id: number,
    url: string,
    token: string,
    private readonly timing: Timing,
    private readonly events: ConnectionEvents,
  ) {
    this.ws = new WebSocket(url, subprotocolsFor(token));
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event: MessageEvent) => this.received(event.data);
    this.ws.onclose = (event: CloseEvent) => {
      if (!this.done) {
        this.stop();
        this.events.closed(event.code, event.reason);
      }
    };
    this.expectFrame(HELLO_TIMEOUT_MS);
  }

  /** Send a frame if the socket is open; false when it is not. */
  send(data: string | Uint8Array<ArrayBuffer>): boolean {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    this.ws.send(data);
    return true;
  }

  /** Input, split below the server's frame limit. */
  sendInput(bytes: Uint8Array<ArrayBuffer>): void {
    for (let offset = 0; offset < bytes.length; offset += INPUT_CHUNK) {
      this.send(bytes.subarray(offset, offset + INPUT_CHUNK));
    }
  }

  /** After hello: ping every so often, and expect an answer to each ping. */
  startKeepalive(): void {
    window.clearInterval(this.keepalive);
    this.keepalive = window.setInterval(() => {
      if (this.send(encodePing())) {
        this.expectFrame(this.timing.pongTimeoutMs);
      }
    }, this.timing.keepaliveMs);
  }

  /** Ours to close: nothing more is reported. */
  close(): void {
    if (!this.done) {
      this.stop();
      this.ws.close(CloseCode.NORMAL);
    }
  }

  private received(data: unknown): void {
    if (this.done) {
      return;
    }
    this.unheard(); // any frame shows the path is alive
    if (data instanceof ArrayBuffer) {
      this.events.output(new Uint8Array(data));
      return;
    }
    let message: ServerMessage;
    try {
      message = decodeServerMessage(String(data));
    } catch {
      return; // garbage, or a message a newer server added
    }
    this.events.message(message);
  }

  /** Expect a frame within `ms`, unless a wait is already running. A path that went dead
   * without a FIN or RST (Wi-Fi roaming, a NAT or VPN forgetting us, a laptop asleep)
   * never closes the socket: only silence after a ping tells. */
  private expectFrame(ms: number): void {
    if (this.watchdog !== undefined) {
      return;
    }
    const due = Date.now() + ms;
    this.watchdog = window.setTimeout(() => {
      this.watchdog = undefined;
      if (this.done) {
        return;
      }
      if (Date.now() - due > LATE_MS && !this.secondChance) {
        // We were asleep or too busy to read: frames may be waiting. Ask once more.
        this.secondChance = true;
        this.send(encodePing());
        this.expectFrame(ms);
        return;
      }
      this.close(); // its close handshake will not come through: do not wait for it
      this.events.closed(CLOSED_ABNORMALLY, "no answer from the server");
    }, ms);
  }

  private unheard(): void {
    window.clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.secondChance = false;
  }

  private stop(): void {
    this.done = true;
    window.clearInterval(this.keepalive);
    this.unheard();
  }
}
