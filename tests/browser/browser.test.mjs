// Browser test of www/halley.js and the /demo page, in Debian's headless Chromium
// (playwright-core drives it; no browser download) against the REAL halley binary.
//
//   node tests/browser/browser.test.mjs        (scripts/browser-test.sh sets it up)
//
// Env: HALLEY_BIN (default target/release/halley), CHROMIUM (default /usr/bin/chromium).
// It starts its halley servers on 127.0.0.1:0 (all transports; --transports sse,poll;
// --transports poll), kills only those, by PID, and bounds every wait: one step never
// waits more than STEP_MS, the whole run never more than WATCHDOG_MS.
// Prints PASS/FAIL per check, then "N passed, N failed"; exits 1 on any failure.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const HALLEY = process.env.HALLEY_BIN || path.join(REPO, "target", "release", "halley");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 15000; // any single wait
const WATCHDOG_MS = 240000; // the whole run

const OUT = mkdtempSync(path.join(tmpdir(), "halley-browser-"));
const servers = []; // every halley we started: {child, pid, name}
let context = null;
let passed = 0;
let failed = 0;

function check(name, ok, detail) {
  if (ok) passed += 1;
  else failed += 1;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Polls `probe` (async, returns a truthy value when done) every 100 ms, at most `ms`.
async function waitFor(probe, what, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

// ------------------------------------------------------------------ halley processes

function startHalley(name, extra, listen = "127.0.0.1:0") {
  const args = ["serve", "--listen", listen, "--api-listen", "127.0.0.1:0", "--stats", "false", "--demo", ...extra];
  return new Promise((resolve, reject) => {
    const child = spawn(HALLEY, args, { stdio: ["ignore", "pipe", "pipe"] });
    const srv = { name, child, pid: child.pid, stderr: "", exited: null };
    servers.push(srv);
    let out = "";
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      reject(new Error(`${name}: no start-up line within 10 s; stderr: ${srv.stderr.slice(-500)}`));
    }, 10000);
    // Keep draining both pipes for the server's whole life.
    child.stdout.on("data", (d) => {
      if (done) return;
      out += d;
      const m = /halley listening: clients=(\S+) api=(\S+) workers=(\d+)/.exec(out);
      if (m) {
        done = true;
        clearTimeout(timer);
        srv.client = m[1];
        srv.api = m[2];
        console.log(`# ${name}: halley ${args.join(" ")} (pid ${child.pid}) clients=${srv.client} api=${srv.api}`);
        resolve(srv);
      }
    });
    child.stderr.on("data", (d) => {
      srv.stderr = (srv.stderr + d).slice(-4000);
    });
    child.on("error", (e) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${name}: cannot run ${HALLEY}: ${e.message}`));
      }
    });
    child.on("exit", (code, signal) => {
      srv.exited = { code, signal };
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${name}: halley exited (${code ?? signal}) before listening: ${srv.stderr.slice(-500)}`));
      }
    });
  });
}

async function stopHalley(srv) {
  if (srv.exited) return;
  const gone = new Promise((r) => srv.child.once("exit", r));
  try {
    process.kill(srv.pid, "SIGTERM");
  } catch (_) {
    return;
  }
  const ok = await Promise.race([gone.then(() => true), sleep(3000).then(() => false)]);
  if (!ok && !srv.exited) {
    try {
      process.kill(srv.pid, "SIGKILL");
    } catch (_) {
      /* gone */
    }
    await Promise.race([gone, sleep(2000)]);
  }
}

async function api(srv, method, pathAndQuery, body) {
  const res = await fetch(`http://${srv.api}${pathAndQuery}`, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, text };
}

async function publish(srv, channel, data) {
  const r = await api(srv, "POST", "/api/publish", { channel, data });
  if (r.status !== 200) throw new Error(`publish to ${channel}: ${r.status} ${r.text}`);
  return JSON.parse(r.text);
}

// An HS256 JWT, as a backend would mint it.
function mintToken(secret, claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

// ------------------------------------------------------------------ page helpers

async function openDemo(srv, query, label) {
  const page = await context.newPage();
  const logFile = path.join(OUT, `${label}-console.log`);
  const lines = [];
  page.on("console", (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => lines.push(`[pageerror] ${e.message}`));
  page.on("close", () => writeFileSync(logFile, lines.join("\n") + "\n"));
  page.consoleLines = lines;
  const url = `http://${srv.client}/demo${query ? "?" + query : ""}`;
  const res = await page.goto(url, { timeout: STEP_MS, waitUntil: "load" });
  if (!res || res.status() !== 200) throw new Error(`GET ${url}: ${res ? res.status() : "no response"}`);
  await page.waitForFunction(() => window.halleyDemo && window.halleyDemo.halley, null, { timeout: STEP_MS });
  return page;
}

// What the page shows (the DOM list) and what halley.js told it.
function pageState(page) {
  return withTimeout(
    page.evaluate(() => ({
      items: Array.from(document.querySelectorAll("#messages li")).map((li) => ({
        seq: Number(li.dataset.seq),
        data: JSON.parse(li.dataset.data),
      })),
      transport: document.getElementById("transport").textContent,
      status: document.getElementById("status").dataset.status,
      recovered: document.getElementById("recovered").textContent,
      subscribed: window.halleyDemo.subscribed,
      resumes: window.halleyDemo.resumes,
      statuses: window.halleyDemo.statuses,
    })),
    5000,
    "page.evaluate",
  );
}

async function screenshot(page, label) {
  const file = path.join(OUT, `${label}.png`);
  await withTimeout(page.screenshot({ path: file, fullPage: true }), STEP_MS, "screenshot");
  console.log(`# screenshot ${label}: ${file}`);
}

function sameList(got, want) {
  return got.length === want.length && got.every((x, i) => JSON.stringify(x) === JSON.stringify(want[i]));
}

const show = (items) => JSON.stringify(items.map((i) => [i.seq, i.data]));

// Waits until the page is subscribed over `transport`, publishes `datas` to `channel`
// and checks the page shows exactly those, in order, with consecutive seqs.
async function receiveInOrder(name, srv, page, channel, transport, datas) {
  await waitFor(async () => {
    const s = await pageState(page);
    return s.subscribed > 0 && s.status === "connected" && s.transport === transport;
  }, `the page subscribed over ${transport}`);
  const before = (await pageState(page)).items.length;
  const seqs = [];
  for (const d of datas) seqs.push((await publish(srv, channel, d)).seq);
  const s = await waitFor(async () => {
    const s = await pageState(page);
    return s.items.length >= before + datas.length ? s : null;
  }, `${datas.length} messages on the page`).catch(async (e) => {
    throw new Error(`${e.message}; page has ${show((await pageState(page)).items)}`);
  });
  await sleep(300); // a late duplicate would show up here
  const got = (await pageState(page)).items.slice(before);
  const want = datas.map((d, i) => ({ seq: seqs[i], data: d }));
  const consecutive = seqs.every((q, i) => i === 0 || q === seqs[i - 1] + 1);
  check(
    name,
    sameList(got, want) && consecutive && s.transport === transport,
    `transport=${s.transport} got ${show(got)} want ${show(want)}`,
  );
}

// Drops every client connection (POST /api/drop-connections, close code 1012) while
// the page is subscribed with `min_reconnect` set, publishes more while it is away,
// and checks it ends with exactly `all` once each and a recovered resume.
async function resumeAfterDrop(name, srv, page, channel, transport, first, second, mustNotice = true) {
  await waitFor(async () => {
    const s = await pageState(page);
    return s.subscribed > 0 && s.status === "connected" && s.transport === transport;
  }, `the page subscribed over ${transport}`);
  const base = (await pageState(page)).items.length;
  const seqs = [];
  for (const d of first) seqs.push((await publish(srv, channel, d)).seq);
  await waitFor(async () => (await pageState(page)).items.length >= base + first.length, `first ${first.length} messages`);
  const drop = await api(srv, "POST", "/api/drop-connections");
  if (drop.status !== 200) throw new Error(`POST /api/drop-connections: ${drop.status} ${drop.text.trim()}`);
  // A long-poll held when the server drops it may be re-sent by Chromium itself (an
  // idempotent GET on a reused keep-alive socket that closed before any answer byte),
  // so the page never sees the drop: then only the no-loss/no-duplicate part applies.
  const noticed = await waitFor(async () => (await pageState(page)).status !== "connected", "the page to notice the drop", 5000)
    .then(() => true)
    .catch((e) => {
      if (mustNotice) throw e;
      return false;
    });
  for (const d of second) seqs.push((await publish(srv, channel, d)).seq);
  const awayWhilePublishing = (await pageState(page)).status !== "connected";
  const all = first.concat(second);
  const s = await waitFor(async () => {
    const s = await pageState(page);
    return s.items.length >= base + all.length && s.status === "connected" ? s : null;
  }, `all ${all.length} messages after the reconnect`).catch(async (e) => {
    throw new Error(`${e.message}; page has ${show((await pageState(page)).items)}`);
  });
  await sleep(500); // a late duplicate would show up here
  const after = await pageState(page);
  const got = after.items.slice(base);
  const want = all.map((d, i) => ({ seq: seqs[i], data: d }));
  const resume = after.resumes[after.resumes.length - 1];
  const lastBefore = seqs[first.length - 1];
  const resumedOk = resume && resume.recovered === true && resume.since === lastBefore && after.recovered === "true";
  const ok =
    sameList(got, want) && after.transport === transport && (noticed ? resumedOk && awayWhilePublishing : !mustNotice);
  check(
    name,
    ok,
    `transport=${after.transport} noticed drop=${noticed} away while publishing=${awayWhilePublishing} ` +
      `resume=${JSON.stringify(resume)} got ${show(got)} want ${show(want)}`,
  );
  return s;
}

// A second Halley in the page, on `transport` only, subscribed to two channels at
// once (positional since/epoch lists, the several-channel poll body): messages
// published to both, interleaved, arrive on each in order, once; then after the
// server drops connections and more are published, still exactly once each.
async function twoChannels(name, srv, page, transport) {
  await withTimeout(
    page.evaluate((transport) => {
      const got = { x2: [], y2: [] };
      const subscribed = { x2: 0, y2: 0 };
      const h = new Halley(location.origin, { transports: [transport], minReconnectMs: 1000 });
      for (const c of ["x2", "y2"]) {
        h.subscribe(c, (data, msg) => got[c].push([msg.seq, data]), { onSubscribed: () => (subscribed[c] += 1) });
      }
      window.two = { h, got, subscribed };
    }, transport),
    5000,
    "starting a two-channel Halley",
  );
  const two = () => withTimeout(page.evaluate(() => ({ got: window.two.got, subscribed: window.two.subscribed, status: window.two.h.status, transport: window.two.h.transport })), 5000, "page.evaluate");
  await waitFor(async () => {
    const t = await two();
    return t.subscribed.x2 > 0 && t.subscribed.y2 > 0 && t.status === "connected";
  }, "two channels subscribed");
  const want = { x2: [], y2: [] };
  const send = async (c, d) => want[c].push([(await publish(srv, c, d)).seq, d]);
  for (let i = 1; i <= 3; i++) {
    await send("x2", `x${i}`);
    await send("y2", `y${i}`);
  }
  await waitFor(async () => {
    const t = await two();
    return t.got.x2.length >= 3 && t.got.y2.length >= 3;
  }, "3 messages on each channel");
  const drop = await api(srv, "POST", "/api/drop-connections");
  if (drop.status !== 200) throw new Error(`POST /api/drop-connections: ${drop.status} ${drop.text.trim()}`);
  await sleep(100);
  for (let i = 4; i <= 6; i++) {
    await send("y2", `y${i}`);
    await send("x2", `x${i}`);
  }
  const t = await waitFor(async () => {
    const t = await two();
    return t.got.x2.length >= 6 && t.got.y2.length >= 6 && t.status === "connected" ? t : null;
  }, "6 messages on each channel").catch(async (e) => {
    throw new Error(`${e.message}; got ${JSON.stringify((await two()).got)}`);
  });
  await sleep(500);
  const after = await two();
  await withTimeout(page.evaluate(() => window.two.h.close()), 5000, "close");
  check(
    name,
    JSON.stringify(after.got) === JSON.stringify(want) && t.transport === transport,
    `transport=${t.transport} got ${JSON.stringify(after.got)} want ${JSON.stringify(want)}`,
  );
}

// A page on a channel nobody publishes to: over IDLE_S seconds it may send about
// one poll per --poll-timeout (plus slack), not a stream of answered-at-once polls.
async function idlePolling(name, srv, pollTimeoutS) {
  const IDLE_S = 6;
  const page = await openDemo(srv, "channel=idle", "c-poll-idle");
  try {
    const polls = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname === "/poll") polls.push(r.url());
    });
    await waitFor(async () => (await pageState(page)).subscribed > 0, "the idle page subscribed");
    const start = polls.length;
    await sleep(IDLE_S * 1000);
    const n = polls.length - start;
    const limit = Math.ceil(IDLE_S / pollTimeoutS) + 2;
    const s = await pageState(page);
    check(
      name,
      n <= limit && s.status === "connected" && s.recovered !== "false",
      `${n} polls in ${IDLE_S} s (limit ${limit}), recovered shown ${s.recovered}; last: ${polls.slice(-2).join(" ")}`,
    );
  } finally {
    await page.close();
  }
}

// gzip as a browser meets it: an EventSource whose stream is gzip'd (each event a
// sync-flushed segment, no trailer: the browser must decode each as it arrives, so
// every message is published only after the page got the one before), then a
// long-poll fetch answered with a gzip member. Both must say Content-Encoding: gzip.
async function gzipInBrowser(srv) {
  const page = await openDemo(srv, "channel=gzip-demo", "g-gzip");
  const encodings = {};
  page.on("response", async (r) => {
    const p = new URL(r.url()).pathname;
    if (p === "/sse" || p === "/poll") encodings[p] = (await r.allHeaders())["content-encoding"] || "none";
  });
  try {
    const big = (n) => ({ n, items: Array.from({ length: 24 }, (_, i) => ({ id: i, name: `item ${i}`, tags: ["a", "b"] })) });
    await withTimeout(
      page.evaluate(() => {
        const g = (window.gz = { got: [], open: false, errors: 0 });
        const es = new EventSource("/sse?channel=gz");
        g.es = es;
        es.onopen = () => (g.open = true);
        es.onerror = () => (g.errors += 1);
        es.onmessage = (e) => g.got.push({ id: e.lastEventId, push: JSON.parse(e.data) });
      }),
      5000,
      "opening the EventSource",
    );
    const gz = () => withTimeout(page.evaluate(() => ({ got: window.gz.got, open: window.gz.open, errors: window.gz.errors })), 5000, "page.evaluate");
    await waitFor(async () => (await gz()).open, "the EventSource to open");
    const sent = [];
    for (let n = 1; n <= 3; n++) {
      const data = big(n);
      sent.push({ seq: (await publish(srv, "gz", data)).seq, data });
      await waitFor(async () => (await gz()).got.length >= n, `event ${n} decoded by the page`);
    }
    const s = await gz();
    await withTimeout(page.evaluate(() => window.gz.es.close()), 5000, "close");
    const got = s.got.map((e) => ({ seq: e.push.seq, data: e.push.data }));
    check(
      "g. gzip: EventSource over a gzip'd stream decodes each event as it arrives",
      encodings["/sse"] === "gzip" && JSON.stringify(got) === JSON.stringify(sent) && s.got.every((e, i) => e.id === String(sent[i].seq)) && s.errors === 0,
      `Content-Encoding ${encodings["/sse"]}, got ${got.length} events (${s.errors} errors): ${JSON.stringify(got).slice(0, 200)}`,
    );
    const polled = await withTimeout(
      page.evaluate(async () => {
        const r = await fetch("/poll?channel=gz&since=0");
        return { status: r.status, encoding: r.headers.get("content-encoding"), body: await r.json() };
      }),
      5000,
      "the long-poll fetch",
    );
    // The network event's headers are read asynchronously: wait for them (bounded).
    await waitFor(async () => encodings["/poll"], "the /poll response event", 5000).catch(() => null);
    const messages = (polled.body.messages || []).map((m) => ({ seq: m.seq, data: m.data }));
    check(
      "g. gzip: a long-poll fetch answered in gzip parses to the messages",
      polled.status === 200 && encodings["/poll"] === "gzip" && polled.encoding === "gzip" && JSON.stringify(messages) === JSON.stringify(sent) && polled.body.last_seq === 3,
      `status ${polled.status}, Content-Encoding ${encodings["/poll"]} (fetch sees ${polled.encoding}), ${messages.length} messages, last_seq ${polled.body.last_seq}`,
    );
  } finally {
    await screenshot(page, "g-gzip").catch(() => {});
    await page.close();
  }
}

// The live dashboard on the API listener: its own series, as the page exposes them.
async function openDashboard(srv, label) {
  const page = await context.newPage();
  const logFile = path.join(OUT, `${label}-console.log`);
  const lines = [];
  page.on("console", (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => lines.push(`[pageerror] ${e.message}`));
  page.on("close", () => writeFileSync(logFile, lines.join("\n") + "\n"));
  page.consoleLines = lines;
  const url = `http://${srv.api}/dashboard`;
  const res = await page.goto(url, { timeout: STEP_MS, waitUntil: "load" });
  if (!res || res.status() !== 200) throw new Error(`GET ${url}: ${res ? res.status() : "no response"}`);
  await page.waitForFunction(() => window.dashboard, null, { timeout: STEP_MS });
  return page;
}

function dashboardState(page) {
  return withTimeout(
    page.evaluate(() => ({ events: window.dashboard.events, status: window.dashboard.status, samples: window.dashboard.samples })),
    5000,
    "page.evaluate",
  );
}

// Runs one phase; an exception is a FAIL of that phase, the run goes on.
async function phase(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, e.message.split("\n")[0]);
  }
}

// ------------------------------------------------------------------ main

async function main() {
  if (!existsSync(HALLEY)) throw new Error(`no halley binary at ${HALLEY} (cargo build --release --bin halley)`);
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);
  console.log(`# output dir (screenshots, page console logs): ${OUT}`);

  const profile = mkdtempSync(path.join(tmpdir(), "halley-chromium-profile-"));
  context = await withTimeout(
    chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 900, height: 700 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      timeout: STEP_MS,
    }),
    STEP_MS + 5000,
    "launching Chromium",
  );
  context.setDefaultTimeout(STEP_MS);

  try {
    const all = await startHalley("all-transports", []);

    await phase("a. ws: demo page receives published messages in order", async () => {
      const page = await openDemo(all, "", "a-ws");
      await receiveInOrder("a. ws: demo page receives published messages in order", all, page, "demo", "ws", [
        "hello 1",
        "hello 2",
        { n: 3, text: "an object" },
        "hello 4",
        "hello 5",
      ]);
      // The page's own form publishes through POST /demo/publish.
      await phase("a. ws: the page's form publishes via /demo/publish", async () => {
        const before = (await pageState(page)).items.length;
        await page.fill("#text", "typed in the page");
        await page.click("#send");
        const s = await waitFor(async () => {
          const s = await pageState(page);
          return s.items.length > before ? s : null;
        }, "the typed message on the page");
        const got = s.items.slice(before);
        check(
          "a. ws: the page's form publishes via /demo/publish",
          got.length === 1 && got[0].data === "typed in the page",
          `got ${show(got)}`,
        );
      });
      await screenshot(page, "a-ws");
      await page.close();
    });

    await phase("b. ws: resume after the server drops connections, nothing lost", async () => {
      const page = await openDemo(all, "channel=resume&min_reconnect=1000", "b-ws-resume");
      try {
        await resumeAfterDrop(
          "b. ws: resume after the server drops connections, nothing lost",
          all,
          page,
          "resume",
          "ws",
          [1, 2, 3, 4, 5],
          [6, 7, 8, 9, 10],
        );
      } finally {
        await screenshot(page, "b-ws-resume").catch(() => {});
        await page.close();
      }
    });

    await phase("c. sse: with WebSocket disabled the page receives over SSE", async () => {
      const sse = await startHalley("sse-poll", ["--transports", "sse,poll"]);
      const page = await openDemo(sse, "min_reconnect=1000", "c-sse");
      try {
        await receiveInOrder("c. sse: with WebSocket disabled the page receives over SSE", sse, page, "demo", "sse", [
          "sse 1",
          "sse 2",
          "sse 3",
          "sse 4",
          "sse 5",
        ]);
        await phase("c. sse: resume after the server drops connections", () =>
          resumeAfterDrop("c. sse: resume after the server drops connections", sse, page, "demo", "sse", ["s6", "s7"], ["s8", "s9", "s10"]),
        );
        await phase("c. sse: two channels on one stream, across a drop", () =>
          twoChannels("c. sse: two channels on one stream, across a drop", sse, page, "sse"),
        );
      } finally {
        await screenshot(page, "c-sse").catch(() => {});
        await page.close();
      }
    });

    await phase("c. poll: with WebSocket and SSE disabled the page receives by long-polling", async () => {
      // A short --poll-timeout: the first poll (no position yet) answers within 2 s,
      // which is when halley.js knows it is subscribed.
      const poll = await startHalley("poll-only", ["--transports", "poll", "--poll-timeout", "2"]);
      const page = await openDemo(poll, "min_reconnect=1000", "c-poll");
      try {
        await receiveInOrder(
          "c. poll: with WebSocket and SSE disabled the page receives by long-polling",
          poll,
          page,
          "demo",
          "poll",
          ["poll 1", "poll 2", "poll 3", "poll 4", "poll 5"],
        );
        await phase("c. poll: resume after the server drops connections", () =>
          resumeAfterDrop("c. poll: resume after the server drops connections", poll, page, "demo", "poll", ["p6", "p7"], ["p8", "p9", "p10"], false),
        );
        await phase("c. poll: two channels in one poll, across a drop", () =>
          twoChannels("c. poll: two channels in one poll, across a drop", poll, page, "poll"),
        );
        await phase("c. poll: an idle channel is polled at the server's hold pace, not in a loop", () =>
          idlePolling("c. poll: an idle channel is polled at the server's hold pace, not in a loop", poll, 2),
        );
      } finally {
        await screenshot(page, "c-poll").catch(() => {});
        await page.close();
      }
    });

    await phase("g. gzip: EventSource and a long-poll fetch over gzip (Chromium sends Accept-Encoding: gzip)", () =>
      gzipInBrowser(all),
    );

    await phase("d. ws: after a server restart (new epoch) the page is told recovered=false", async () => {
      let srv = await startHalley("restart-1", []);
      const page = await openDemo(srv, "channel=restart&min_reconnect=1000", "d-restart");
      try {
        await receiveInOrder("d. ws: before the restart, messages arrive", srv, page, "restart", "ws", ["r1", "r2", "r3"]);
        const port = srv.client.split(":").pop();
        await stopHalley(srv);
        await waitFor(async () => (await pageState(page)).status !== "connected", "the page to notice the restart", 5000);
        srv = await startHalley("restart-2", [], `127.0.0.1:${port}`);
        const s = await waitFor(async () => {
          const s = await pageState(page);
          return s.status === "connected" && s.resumes.length > 0 ? s : null;
        }, "the page to resume on the restarted server");
        const resume = s.resumes[s.resumes.length - 1];
        const before = s.items.length;
        const seq = (await publish(srv, "restart", "after restart")).seq;
        const after = await waitFor(async () => {
          const s = await pageState(page);
          return s.items.length > before ? s : null;
        }, "a message published after the restart").catch(() => null);
        const got = after ? after.items.slice(before) : [];
        check(
          "d. ws: after a server restart (new epoch) the page is told recovered=false",
          resume.recovered === false &&
            resume.epochChanged === true &&
            s.recovered === "false" &&
            sameList(got, [{ seq, data: "after restart" }]),
          `transport=${s.transport} resume=${JSON.stringify(resume)} then got ${show(got)}`,
        );
      } finally {
        await screenshot(page, "d-restart").catch(() => {});
        await page.close();
      }
    });

    await phase("e. ws with a token: a private channel, refreshed past its first exp without reconnecting", async () => {
      const name = "e. ws with a token: a private channel, refreshed past its first exp without reconnecting";
      const secret = "browser-test-secret";
      const secretFile = path.join(OUT, "token.secret");
      writeFileSync(secretFile, secret + "\n");
      const srv = await startHalley("tokens", ["--token-secret-file", secretFile]);
      // The first token expires 4 s after it is minted; halley.js must refresh it.
      let minted = 0;
      await context.exposeFunction("mintTestToken", () => {
        minted += 1;
        const ttl = minted === 1 ? 4 : 120;
        return mintToken(secret, { sub: "ann", exp: Math.floor(Date.now() / 1000) + ttl, channels: ["private:room"] });
      });
      const page = await openDemo(srv, "", "e-tokens");
      try {
        await withTimeout(
          page.evaluate(async () => {
            const t = (window.tokenTest = { got: [], statuses: [], errors: [] });
            const h = new Halley(location.origin, {
              token: await window.mintTestToken(),
              getToken: () => window.mintTestToken(),
              onStatus: (status) => t.statuses.push(status),
              onError: (message) => t.errors.push(message),
            });
            t.h = h;
            h.subscribe("private:room", (data) => t.got.push(data));
            h.subscribe("private:other", (data) => t.got.push("leaked " + data));
          }),
          5000,
          "creating the token client",
        );
        const state = () => withTimeout(page.evaluate(() => ({ ...window.tokenTest, transport: window.tokenTest.h.transport, h: undefined })), 5000, "page.evaluate");
        await waitFor(async () => (await state()).statuses.includes("connected"), "the token client to connect");
        await sleep(500);
        await publish(srv, "private:room", "before exp");
        await publish(srv, "private:other", "not granted");
        await waitFor(async () => (await state()).got.includes("before exp"), "the first private message");
        await sleep(5000); // past the first token's exp
        await publish(srv, "private:room", "after exp");
        const s = await waitFor(async () => {
          const s = await state();
          return s.got.includes("after exp") ? s : null;
        }, "the message after the first exp");
        const stats = JSON.parse((await api(srv, "GET", "/api/stats")).text);
        const connects = s.statuses.filter((x) => x === "connected").length;
        check(
          name,
          sameList(s.got, ["before exp", "after exp"]) &&
            connects === 1 &&
            s.transport === "ws" &&
            minted >= 2 &&
            stats.refreshes_total >= 1 &&
            stats.token_expired_closes_total === 0 &&
            s.errors.some((e) => e.includes("forbidden channel private:other")),
          `got=${JSON.stringify(s.got)} connects=${connects} transport=${s.transport} minted=${minted} ` +
            `refreshes=${stats.refreshes_total} expired=${stats.token_expired_closes_total} errors=${JSON.stringify(s.errors)}`,
        );
      } finally {
        await screenshot(page, "e-tokens").catch(() => {});
        await page.close();
      }
    });
    await phase("f. dashboard: the page charts the stats stream, and the curves move under load", async () => {
      const name = "f. dashboard: the page charts the stats stream, and the curves move under load";
      const srv = await startHalley("dashboard", []);
      const page = await openDashboard(srv, "f-dashboard");
      // The load: WebSockets subscribed to one channel (opened from a page on the
      // client listener), then bursts of publishes through the API.
      const load = await openDemo(srv, "channel=dash-demo", "f-load");
      const SOCKETS = 20;
      try {
        await waitFor(async () => (await dashboardState(page)).events >= 1, "the first stream event");
        await withTimeout(
          load.evaluate((n) => {
            window.loadSockets = [];
            for (let i = 0; i < n; i++) window.loadSockets.push(new WebSocket(`ws://${location.host}/ws?subscribe=dash`));
          }, SOCKETS),
          5000,
          "opening the load's WebSockets",
        );
        await waitFor(
          () => withTimeout(load.evaluate(() => window.loadSockets.every((w) => w.readyState === 1)), 5000, "page.evaluate"),
          `${SOCKETS} WebSockets open`,
        );
        for (let burst = 0; burst < 4; burst++) {
          for (let i = 0; i < 25; i++) await publish(srv, "dash", { burst, i });
          await sleep(700);
        }
        const s = await waitFor(async () => {
          const s = await dashboardState(page);
          const moved = s.samples.some((x) => x.delivered_per_s > 0) && s.samples.some((x) => x.ws >= SOCKETS);
          return s.events >= 3 && moved ? s : null;
        }, "the curves to move").catch(async (e) => {
          const s = await dashboardState(page);
          throw new Error(`${e.message}; events=${s.events} samples=${JSON.stringify(s.samples.slice(-5))}`);
        });
        const first = s.samples[0];
        const maxWs = Math.max(...s.samples.map((x) => x.ws));
        const maxDelivered = Math.max(...s.samples.map((x) => x.delivered_per_s));
        const cspErrors = page.consoleLines.filter((l) => /Content Security Policy|pageerror/.test(l));
        check(
          name,
          s.status === "connected" && maxWs > first.ws && maxDelivered > 0 && cspErrors.length === 0,
          `events=${s.events} status=${s.status} ws ${first.ws}->${maxWs} max delivered/s=${maxDelivered} ` +
            `broker=${s.samples[s.samples.length - 1].broker} page errors=${JSON.stringify(cspErrors)}`,
        );
      } finally {
        await screenshot(page, "f-dashboard").catch(() => {});
        await load.close();
        await page.close();
      }
    });
  } finally {
    await withTimeout(context.close(), 10000, "closing Chromium").catch((e) => console.log(`# ${e.message}`));
    rmSync(profile, { recursive: true, force: true });
  }
}

async function cleanup() {
  for (const srv of servers) await stopHalley(srv);
  for (const srv of servers) {
    const e = srv.exited;
    const signalled = e && (e.signal === "SIGTERM" || e.signal === "SIGKILL");
    if (e && e.code !== 0 && !signalled) console.log(`# ${srv.name} exited ${e.code}: ${srv.stderr.slice(-500)}`);
  }
}

const watchdog = setTimeout(async () => {
  console.log(`FAIL watchdog: the run took over ${WATCHDOG_MS / 1000} s`);
  failed += 1;
  await Promise.race([cleanup(), sleep(5000)]);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}, WATCHDOG_MS);

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    await Promise.race([cleanup(), sleep(5000)]);
    process.exit(130);
  });
}

try {
  await main();
} catch (e) {
  check("set-up", false, e.message.split("\n")[0]);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
console.log(`# screenshots and page console logs: ${OUT}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
