// node-pty + ws reference terminal server (the design webterm replaced), for benchmarks.
// Usage: node server.js PORT  -> prints "listening on PORT" when ready.
const http = require("http");
const { WebSocketServer } = require("ws");
const pty = require("node-pty");

const port = Number(process.argv[2] || 0);
const server = http.createServer();
const wss = new WebSocketServer({ server });
wss.on("connection", (ws) => {
  const shell = pty.spawn("/bin/bash", ["--norc", "--noprofile", "-i"], {
    name: "xterm-256color", cols: 80, rows: 24, cwd: process.env.HOME, env: process.env,
  });
  shell.onData((data) => ws.send(data));
  ws.on("message", (data) => shell.write(data.toString()));
  ws.on("close", () => shell.kill());
  shell.onExit(() => ws.close());
});
server.listen(port, "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
