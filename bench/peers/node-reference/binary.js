// node-pty + ws written the way a tuned Node terminal server is: the peer to beat.
// Output stays Buffers (node-pty `encoding: null`), each pty chunk is one binary frame,
// and the pty is paused while more than 1 MiB waits on the socket (flow control).
// Usage: node binary.js PORT  -> prints "listening on PORT" when ready.
const http = require("http");
const { WebSocketServer } = require("ws");
const pty = require("node-pty");

const HIGH_WATER = 1 << 20;
const port = Number(process.argv[2] || 0);
const server = http.createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws) => {
  const shell = pty.spawn("/bin/bash", ["--norc", "--noprofile", "-i"], {
    name: "xterm-256color", cols: 80, rows: 24, cwd: process.env.HOME, env: process.env,
    encoding: null,
  });
  let paused = false;
  const resume = () => {
    if (paused && ws.bufferedAmount <= HIGH_WATER) {
      paused = false;
      shell.resume();
    }
  };
  shell.onData((data) => {
    ws.send(data, { binary: true }, resume);
    if (!paused && ws.bufferedAmount > HIGH_WATER) {
      paused = true;
      shell.pause();
    }
  });
  ws.on("message", (data) => shell.write(data));
  ws.on("close", () => shell.kill());
  shell.onExit(() => ws.close());
});
server.listen(port, "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
