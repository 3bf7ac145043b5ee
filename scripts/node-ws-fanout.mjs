// A per-connection-compressing comparison server for scripts/compression-bench.sh:
// Node's `ws` with perMessageDeflate, speaking just enough of Halley's protocol for
// halley-bench's hold and fanout scenarios (`/ws?subscribe=C`, `POST /api/publish`
// answered `{"channel":C,"seq":N,"epoch":E}`, the push built as Halley builds it).
// Every send compresses for that connection, with its own zlib stream (context
// takeover, ws's default), which is the cost Halley's shared frames avoid.
//   npm install ws@8 && node scripts/node-ws-fanout.mjs CLIENT_PORT API_PORT on|off
import http from "node:http";
import { WebSocketServer } from "ws";

const [clientPort, apiPort, mode] = process.argv.slice(2);
const perMessageDeflate = mode === "on" ? { threshold: 256 } : false;
const subscribers = new Map(); // channel -> Set of sockets
const seqs = new Map();

const wss = new WebSocketServer({ noServer: true, perMessageDeflate });
const clients = http.createServer((_, res) => res.writeHead(426).end());
clients.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://x");
  const channel = url.searchParams.get("subscribe");
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (!subscribers.has(channel)) subscribers.set(channel, new Set());
    subscribers.get(channel).add(ws);
    ws.on("close", () => subscribers.get(channel).delete(ws));
    ws.on("error", () => {});
  });
});

const api = http.createServer((req, res) => {
  if (req.url === "/api/stats") {
    let online = 0;
    for (const set of subscribers.values()) online += set.size;
    return res.end(JSON.stringify({ online, rss_bytes: process.memoryUsage().rss }));
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    const channel = JSON.parse(body).channel;
    // The bench's body is {"channel":"C","data":DATA}: DATA byte for byte.
    const data = body.slice(body.indexOf('"data":') + 7, -1);
    const seq = (seqs.get(channel) ?? 0) + 1;
    seqs.set(channel, seq);
    const push = `{"channel":"${channel}","seq":${seq},"data":${data}}`;
    for (const ws of subscribers.get(channel) ?? []) ws.send(push);
    res.setHeader("Content-Type", "application/json");
    res.end(`{"channel":"${channel}","seq":${seq},"epoch":"node"}`);
  });
});

clients.listen(Number(clientPort), "127.0.0.1");
api.listen(Number(apiPort), "127.0.0.1", () =>
  console.log(`node-ws listening: clients=127.0.0.1:${clientPort} api=127.0.0.1:${apiPort}`),
);
