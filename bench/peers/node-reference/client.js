// An independent benchmark client (Node + ws), so the client is never what limits a
// server: one flood of output, or N single keystrokes, against one target.
// Usage: node client.js '{"url": ..., "kind": "webterm|terminado|node", "protocols": [...],
//   "origin": ..., "mode": "flood|echo", "size": N, "keys": N}'
// Prints one JSON line: {"mb_s": ...} or {"p50_ms": ..., "p99_ms": ...}.
const WebSocket = require("ws");

const cfg = JSON.parse(process.argv[2]);
const SENTINEL = Buffer.from("BENCH-DONE-42");
const FLOOD = (n) =>
  `yes 'webterm throughput benchmark: the quick brown fox jumps over the lazy dog 0123' | head -c ${n}; echo BENCH-DONE-$((6*7))\n`;
const ACK_EVERY = 64 * 1024; // what the page batches its acks to

const ws = new WebSocket(cfg.url, cfg.protocols || [], {
  perMessageDeflate: false,
  maxPayload: 16 << 20,
  headers: cfg.origin ? { Origin: cfg.origin } : {},
});
let unacked = 0;
let onData = () => {};

function send(text) {
  if (cfg.kind === "terminado") ws.send(JSON.stringify(["stdin", text]));
  else if (cfg.kind === "webterm") ws.send(Buffer.from(text), { binary: true });
  else ws.send(text);
}

ws.on("message", (data, isBinary) => {
  let chunk;
  if (cfg.kind === "terminado") {
    const [kind, text] = JSON.parse(data.toString());
    if (kind !== "stdout") return;
    chunk = Buffer.from(text);
  } else if (cfg.kind === "webterm") {
    if (!isBinary) return; // control messages
    chunk = data;
    unacked += chunk.length;
    if (unacked >= ACK_EVERY) {
      ws.send(JSON.stringify({ type: "ack", bytes: unacked }));
      unacked = 0;
    }
  } else {
    chunk = isBinary ? data : Buffer.from(data.toString());
  }
  onData(chunk);
});

function until(predicate, ms) {
  return new Promise((resolve, reject) => {
    let tail = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error("timed out")), ms);
    onData = (chunk) => {
      tail = Buffer.concat([tail, chunk]).subarray(-64);
      if (predicate(tail, chunk)) {
        clearTimeout(timer);
        onData = () => {};
        resolve();
      }
    };
  });
}

const quiet = (ms) =>
  new Promise((resolve) => {
    let timer = setTimeout(resolve, ms);
    onData = () => {
      clearTimeout(timer);
      timer = setTimeout(resolve, ms);
    };
  });

async function settle() {
  const ready = until((tail) => tail.includes("READY-5"), 30000);
  send("echo READY-$((2+3))\n");
  await ready;
  await quiet(300);
}

async function flood() {
  let received = 0;
  const started = process.hrtime.bigint();
  const done = new Promise((resolve, reject) => {
    let tail = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error("flood timed out")), 300000);
    onData = (chunk) => {
      received += chunk.length;
      tail = Buffer.concat([tail.subarray(-64), chunk.subarray(-64)]);
      if (tail.includes(SENTINEL)) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  send(FLOOD(cfg.size));
  await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { mb_s: received / seconds / 1e6, bytes: received, seconds };
}

async function echo() {
  const samples = [];
  for (let i = 0; i < cfg.keys; i++) {
    const key = "abcdefghij"[i % 10];
    const seen = until((tail, chunk) => chunk.includes(key), 10000);
    const started = process.hrtime.bigint();
    send(key);
    await seen;
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
    if (i % 50 === 49) {
      send("\x15"); // ^U: keep the line short
      await quiet(50);
    }
  }
  samples.sort((a, b) => a - b);
  return {
    p50_ms: samples[Math.floor(samples.length / 2)],
    p99_ms: samples[Math.floor(samples.length * 0.99) - 1],
  };
}

ws.on("open", async () => {
  try {
    await settle();
    const result = cfg.mode === "flood" ? await flood() : await echo();
    process.stdout.write(JSON.stringify(result) + "\n");
    ws.close();
    setTimeout(() => process.exit(0), 200).unref();
  } catch (err) {
    process.stderr.write(String(err) + "\n");
    process.exit(1);
  }
});
ws.on("error", (err) => {
  process.stderr.write(String(err) + "\n");
  process.exit(1);
});
