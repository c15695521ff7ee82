// The wire protocol as the page speaks it: close codes, control messages and the answer
// to POST /api/terminal. It mirrors src/webterm/protocol.py (docs/protocol.md);
// tests/test_page_protocol.py checks that the close codes and constants below equal the
// Python ones, so keep them one `NAME: value,` a line.
//
// Binary frames are terminal bytes and never pass through here. Text frames are JSON
// objects with a `type`: decodeServerMessage() turns one into a typed message or throws
// MalformedMessage, as decode_server_message() does in Python.

export const SUBPROTOCOL = "webterm.v1";
export const TOKEN_SUBPROTOCOL_PREFIX = "webterm.token.";
export const MAX_CONTROL_MESSAGE_BYTES = 4096; // a longer text frame is refused unparsed
export const MAX_FILE_BYTES = 9007199254740991; // the largest size a download message names (2 ** 53 - 1)

/** WebSocket close codes webterm sends: protocol.py's CloseCode, name for name. */
export const CloseCode = {
  NORMAL: 1000, // the shell exited; the session is over
  GOING_AWAY: 1001, // the server is shutting down
  PROTOCOL_ERROR: 1002,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011, // the terminal failed, e.g. its shell could not start
  UNAUTHORIZED: 4401, // missing, forged, expired or other-terminal token
  FORBIDDEN_ORIGIN: 4403, // the page's Origin is not allowed
  TERMINAL_GONE: 4404, // the terminal behind the proxy could not be reached
  SUPERSEDED: 4409, // a newer connection took this terminal over
  REVOKED: 4410, // the owner revoked the share link this viewer came with
} as const;

/** What a browser reports for a connection that ended without a close frame (never sent). */
export const CLOSED_ABNORMALLY = 1006;

/** Who a connection is: the terminal's owner, or a share link's viewer (its mode). */
export type Role = "owner" | "view" | "type";

/** One viewer connection, as the owner's `viewers` message lists it. */
export interface Viewer {
  readonly id: number;
  readonly link: string;
  readonly mode: "view" | "type";
}

export type ServerMessage =
  | { readonly type: "hello"; readonly terminal: string; readonly reattached: boolean; readonly role: Role }
  | { readonly type: "size"; readonly cols: number; readonly rows: number }
  | { readonly type: "viewers"; readonly viewers: readonly Viewer[] }
  | { readonly type: "idle"; readonly secondsLeft: number }
  | { readonly type: "exit"; readonly status: number }
  | { readonly type: "error"; readonly message: string }
  | { readonly type: "pong" }
  | { readonly type: "flush" }
  | { readonly type: "download"; readonly id: string; readonly name: string; readonly size: number };

/** A text frame that is not a valid server message; the text says why. */
export class MalformedMessage extends Error {
  override name = "MalformedMessage";
}

const INT_LIMIT = 2 ** 31;

function integer(data: Record<string, unknown>, name: string, lo: number, hi: number): number {
  const value = data[name];
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new MalformedMessage(`'${name}' must be an integer`);
  }
  if (value < lo || value > hi) {
    throw new MalformedMessage(`'${name}' must be between ${lo} and ${hi}`);
  }
  return value;
}

/** The message in a text frame from the terminal server; throws MalformedMessage. */
export function decodeServerMessage(text: string): ServerMessage {
  if (text.length > MAX_CONTROL_MESSAGE_BYTES) {
    throw new MalformedMessage(`control message longer than ${MAX_CONTROL_MESSAGE_BYTES} bytes`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new MalformedMessage("control message is not valid JSON");
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new MalformedMessage("control message must be a JSON object");
  }
  const fields = data as Record<string, unknown>;
  switch (fields.type) {
    case "hello": {
      const { terminal, reattached } = fields;
      if (typeof terminal !== "string" || typeof reattached !== "boolean") {
        throw new MalformedMessage("hello needs 'terminal' (string) and 'reattached' (bool)");
      }
      const role = fields.role ?? "owner";
      if (role !== "owner" && role !== "view" && role !== "type") {
        throw new MalformedMessage("hello's 'role' must be owner, view or type");
      }
      return { type: "hello", terminal, reattached, role };
    }
    case "size":
      return { type: "size", cols: integer(fields, "cols", 1, 65536), rows: integer(fields, "rows", 1, 65536) };
    case "viewers":
      return { type: "viewers", viewers: viewers(fields.viewers) };
    case "idle":
      return { type: "idle", secondsLeft: integer(fields, "seconds_left", 0, INT_LIMIT) };
    case "exit":
      return { type: "exit", status: integer(fields, "status", -INT_LIMIT, INT_LIMIT) };
    case "error":
      if (typeof fields.message !== "string") {
        throw new MalformedMessage("error needs a string 'message'");
      }
      return { type: "error", message: fields.message };
    case "pong":
    case "flush":
      return { type: fields.type };
    case "download": {
      const { id, name } = fields;
      if (typeof id !== "string" || typeof name !== "string") {
        throw new MalformedMessage("download needs 'id' and 'name' (strings) and 'size'");
      }
      return { type: "download", id, name, size: integer(fields, "size", 0, MAX_FILE_BYTES) };
    }
    default:
      if (typeof fields.type !== "string") {
        throw new MalformedMessage("control message has no string 'type'");
      }
      throw new MalformedMessage(`unknown message type '${fields.type.slice(0, 40)}'`);
  }
}

const LINK = /^[A-Za-z0-9_-]{1,64}$/;

function viewers(items: unknown): Viewer[] {
  if (!Array.isArray(items)) {
    throw new MalformedMessage("'viewers' must be a list");
  }
  return items.map((item: unknown) => {
    const fields = typeof item === "object" && item !== null ? (item as Record<string, unknown>) : {};
    const { link, mode } = fields;
    if (typeof link !== "string" || !LINK.test(link) || (mode !== "view" && mode !== "type")) {
      throw new MalformedMessage("a viewer needs 'id', 'link' and 'mode' (view or type)");
    }
    return { id: integer(fields, "id", 0, INT_LIMIT), link, mode };
  });
}

/** The owner revokes share link `link`: its viewers are closed (4410) and it is refused. */
export function encodeRevoke(link: string): string {
  return JSON.stringify({ type: "revoke", link });
}

/** Flow control: this many more output bytes were rendered (or dropped). */
export function encodeAck(bytes: number): string {
  return JSON.stringify({ type: "ack", bytes });
}

export function encodeResize(cols: number, rows: number): string {
  return JSON.stringify({ type: "resize", cols, rows });
}

export function encodePing(): string {
  return JSON.stringify({ type: "ping" });
}

/** The offer in Sec-WebSocket-Protocol: the version, and the token (never in the URL). */
export function subprotocolsFor(token: string): string[] {
  return [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + token];
}

// --- POST /api/terminal ---------------------------------------------------------------------

/** A terminal the webserver handed out: connect to `url` with `token`. */
export interface Allocation {
  readonly terminal: string;
  readonly url: string;
  readonly token: string;
  /** true: the terminal this tab already had (reattach); false: a new one. */
  readonly reconnect: boolean;
  /** The tab's id to send next time (tab identity mode), or null. */
  readonly client: string | null;
}

/** A refused request. `retryAfter` in seconds; null: retrying will not help. */
export interface Refusal {
  readonly status: number;
  readonly error: string;
  readonly retryAfter: number | null;
}

const DEFAULT_RETRY_S = 5; // when a busy answer names no delay

/** The webserver's answer: `body` is its parsed JSON (anything, for a proxy's error page),
 * `retryAfterHeader` its Retry-After header. 503 and 429 are "busy": retry later. */
export function decodeAnswer(
  status: number,
  body: unknown,
  retryAfterHeader: string | null,
): Allocation | Refusal {
  const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  if (status >= 200 && status < 300) {
    const { terminal, url, token, reconnect, client } = fields;
    if (
      typeof terminal === "string" &&
      typeof url === "string" &&
      typeof token === "string" &&
      typeof reconnect === "boolean" &&
      (client === undefined || client === null || typeof client === "string")
    ) {
      return { terminal, url, token, reconnect, client: client || null };
    }
    return { status, error: "the server's answer is not a terminal", retryAfter: null };
  }
  const busy = status === 503 || status === 429;
  const seconds = Number(fields.retry_after) || Number(retryAfterHeader);
  return {
    status,
    error: String(fields.error || `HTTP ${status}`),
    retryAfter: busy ? Math.max(1, Math.ceil(seconds || DEFAULT_RETRY_S)) : null,
  };
}

export function isRefusal(answer: Allocation | Refusal): answer is Refusal {
  return "status" in answer;
}
