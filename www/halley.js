/*
 * halley.js: the browser client of the Halley push server.
 *
 * Plain JavaScript, no build step, no dependency. Load it as a classic script
 * (<script src="/halley.js"></script>) and it defines window.Halley.
 *
 *   const h = new Halley(location.origin, {
 *     transports: ["ws", "sse", "poll"],      // tried in this order
 *     onStatus(status, info) { ... },         // "connecting" | "connected" |
 *   });                                       // "reconnecting" | "idle" | "closed"
 *   const off = h.subscribe("news", (data, msg) => { ... }, {
 *     onResume(info) { if (!info.recovered) { ... messages were missed ... } },
 *   });
 *   off();        // unsubscribe
 *   h.transport   // "ws", "sse" or "poll": the transport in use (or being tried)
 *   h.close();
 *
 * Tokens (private: and user: channels, --require-token): pass `token` (a JWT from
 * your backend) and/or `getToken()`, a function returning a Promise of a fresh one.
 * The token goes in the URL on every transport (?token=). With getToken, the client
 * refreshes before the token's exp (read from its payload): {"op":"refresh"} on a
 * WebSocket, a new request on SSE and polling. A close 3000 (token missing, bad or
 * expired) fetches a new token before reconnecting; a channel refused with 3003 or
 * 403 ("forbidden channel C") is reported through onError and dropped, not retried.
 *
 * Protocol (the server's contract): every message is {"channel","seq","data"}, seq
 * counting 1, 2, 3 ... per channel, and each channel has an "epoch" that changes when
 * its numbering restarts. The client remembers, per channel, the last seq it handed to
 * the app and the epoch, and every (re)subscription resumes from there ("since" and
 * "epoch"): the server replays what was missed, or says recovered=false when it cannot
 * (the app is told through onResume). Duplicates (seq <= last seen) are dropped.
 *
 * Transports:
 *   ws    WebSocket /ws, {"op":"subscribe","channel":C,"since":S,"epoch":E} per channel.
 *   sse   EventSource /sse?channel=a,b&since=..&epoch=.. (positional lists). On any
 *         error the EventSource is closed and a new one opened with the positions in
 *         the URL, so the epoch is always checked (no native auto-reconnect).
 *   poll  long-polling GET /poll?channel=..&since=..&epoch=.., one request at a time.
 * A transport that fails before it ever opens (e.g. the server answers 404 because it
 * is disabled) hands over to the next one at once. A connection that drops is
 * reconnected with jittered exponential backoff (full jitter: a random delay in
 * [0, min(cap, base * 2^attempt)], base 250 ms, cap 10 s) on the same transport; after
 * a few failed attempts the next transports are tried, and after the last one the list
 * starts again from the first.
 */
(function (global) {
  "use strict";

  const TRANSPORTS = ["ws", "sse", "poll"];
  const CHANNEL_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

  const DEFAULTS = {
    transports: TRANSPORTS,
    backoffBaseMs: 250, // first reconnect within [0, 250 ms]
    backoffCapMs: 10000, // the backoff window never grows past 10 s
    minReconnectMs: 0, // added to every reconnect delay (tests use it to stay away)
    stableMs: 5000, // a connection that lived this long resets the backoff
    sameTransportRetries: 2, // failed re-opens of a transport that worked, before moving on
    openTimeoutMs: 10000, // a WebSocket or EventSource not open by then counts as failed
    pollTimeoutMs: 60000, // client-side limit on one long-poll request
    onStatus: null,
    onError: null, // (message) for server error replies and handler exceptions
    token: null, // a connection token (JWT), sent as ?token=
    getToken: null, // () => Promise<string>: a fresh token, for refreshes and after 3000
    refreshLeadMs: 10000, // refresh this long before exp (at most half the time left)
  };

  // The `exp` claim (seconds) of a JWT, read without verifying it; null if none.
  function tokenExp(token) {
    try {
      const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const exp = JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).exp;
      return typeof exp === "number" ? exp : null;
    } catch (_) {
      return null;
    }
  }

  const FORBIDDEN = "forbidden channel ";

  // Query-string value: channel names and epochs are [A-Za-z0-9_.:-], kept as is.
  function enc(s) {
    return String(s).replace(/[^A-Za-z0-9_.:-]/gu, (c) => encodeURIComponent(c));
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return undefined;
    }
  }

  // The epoch to send with a channel's position. At seq 0 (nothing seen yet) the
  // epoch is left out: there is no message of ours it could be confused with, and a
  // channel that went away empty (no subscriber, no held poll, no history) comes back
  // with a new epoch, which would make the resume "not recovered" for nothing; a
  // long-poller on an idle channel would then get that answer at once, every time.
  function positionEpoch(ch) {
    return ch.seq !== null && ch.seq > 0 && ch.epoch ? ch.epoch : null;
  }

  function isObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }

  class Halley {
    constructor(baseUrl, options) {
      const loc = typeof location !== "undefined" ? location : null;
      this.baseUrl = String(baseUrl || (loc && loc.origin) || "").replace(/\/+$/, "");
      this.options = Object.assign({}, DEFAULTS, options || {});
      const wanted = Array.isArray(this.options.transports) ? this.options.transports : TRANSPORTS;
      this.transports = wanted.filter((t, i) => TRANSPORTS.includes(t) && wanted.indexOf(t) === i);
      if (this.transports.length === 0) {
        throw new Error("Halley: no known transport in " + JSON.stringify(wanted));
      }
      this.transport = null;
      this.status = "idle";

      this._statusFns = [];
      if (typeof this.options.onStatus === "function") this._statusFns.push(this.options.onStatus);
      this._channels = new Map(); // name -> {name, seq, epoch, subs, ready, sent}
      this._index = 0; // which transport is used / tried
      this._attempt = 0; // backoff exponent
      this._sameFailures = 0;
      this._worked = new Set(); // transports that opened at least once
      this._conn = null;
      this._timer = null;
      this._closed = false;
      this._token = this.options.token ? String(this.options.token) : null;
      this._canRefresh = typeof this.options.getToken === "function";
      this._needToken = this._canRefresh && !this._token; // fetch one before the first connect
      this._refreshTimer = null;
      this._onOnline = () => {
        // The network came back: skip the rest of a backoff wait.
        if (this._timer !== null && !this._closed) {
          clearTimeout(this._timer);
          this._timer = null;
          this._connect();
        }
      };
      if (typeof addEventListener === "function") addEventListener("online", this._onOnline);
      // Connect on the next tick, so subscriptions made right after `new` go with it.
      this._schedule(0);
    }

    /** Adds a status listener `fn(status, info)`; returns a function that removes it. */
    onStatus(fn) {
      this._statusFns.push(fn);
      return () => {
        const i = this._statusFns.indexOf(fn);
        if (i >= 0) this._statusFns.splice(i, 1);
      };
    }

    /**
     * Subscribes `handler(data, msg)` to `channel`. Options:
     *   onResume(info)     after a re-subscription from a known position (a reconnect,
     *                      a transport change); info.recovered false means messages were
     *                      missed (history gone, or the channel's epoch changed)
     *   onSubscribed(info) each time the server confirms the subscription
     *   since, epoch       start from a position the app kept (e.g. across page loads)
     * info = {channel, recovered, since, seq, epoch, epochChanged, transport}.
     * Returns a function that unsubscribes this handler.
     */
    subscribe(channel, handler, opts) {
      if (this._closed) throw new Error("Halley: closed");
      channel = String(channel);
      if (!CHANNEL_RE.test(channel)) throw new Error("Halley: invalid channel name " + JSON.stringify(channel));
      if (typeof handler !== "function") throw new Error("Halley: handler must be a function");
      opts = opts || {};
      const sub = { handler, onResume: opts.onResume, onSubscribed: opts.onSubscribed };
      let ch = this._channels.get(channel);
      if (!ch) {
        ch = { name: channel, seq: null, epoch: null, subs: new Set(), ready: false, sent: null };
        if (Number.isInteger(opts.since) && opts.since >= 0) {
          ch.seq = opts.since;
          if (opts.epoch != null) ch.epoch = String(opts.epoch);
        }
        ch.subs.add(sub);
        this._channels.set(channel, ch);
        if (this._conn && this._conn.channelAdded) this._conn.channelAdded(ch);
      } else {
        ch.subs.add(sub);
      }
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        ch.subs.delete(sub);
        if (ch.subs.size === 0 && this._channels.get(channel) === ch) {
          this._channels.delete(channel);
          if (this._conn && this._conn.channelRemoved) this._conn.channelRemoved(ch);
        }
      };
    }

    /** The position the client holds for `channel`: {seq, epoch}, or null. */
    position(channel) {
      const ch = this._channels.get(channel);
      return ch ? { seq: ch.seq, epoch: ch.epoch } : null;
    }

    /** Closes the connection for good; no reconnect follows. */
    close() {
      if (this._closed) return;
      this._closed = true;
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
      this._stopRefresh();
      const conn = this._conn;
      this._conn = null;
      if (conn) this._shutdown(conn);
      if (typeof removeEventListener === "function") removeEventListener("online", this._onOnline);
      this._setStatus("closed");
    }

    // ------------------------------------------------------------ connection cycle

    _schedule(delay) {
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = setTimeout(() => {
        this._timer = null;
        this._connect();
      }, delay);
    }

    _connect() {
      if (this._closed) return;
      if (this._needToken && this._canRefresh) {
        this._needToken = false;
        this._fetchToken().then(() => this._connect());
        return;
      }
      const name = this.transports[this._index];
      this.transport = name;
      const conn = { name, opened: false, openedAt: 0, closed: false, openTimer: null };
      this._conn = conn;
      this._setStatus("connecting");
      if (name !== "poll") {
        // A proxy may hold the upgrade or the stream without answering: move on.
        conn.openTimer = setTimeout(() => this._lost(conn, name + ": not open after " + this.options.openTimeoutMs + " ms"), this.options.openTimeoutMs);
      }
      if (name === "ws") this._openWs(conn);
      else if (name === "sse") this._openSse(conn);
      else this._openPoll(conn);
    }

    _isCurrent(conn) {
      return this._conn === conn && !conn.closed && !this._closed;
    }

    _shutdown(conn) {
      conn.closed = true;
      this._stopRefresh();
      if (conn.openTimer !== null) clearTimeout(conn.openTimer);
      if (conn.shutdown) {
        try {
          conn.shutdown();
        } catch (_) {
          /* already closed */
        }
      }
    }

    _opened(conn) {
      if (conn.opened) return;
      if (conn.openTimer !== null) clearTimeout(conn.openTimer);
      conn.openTimer = null;
      conn.opened = true;
      conn.openedAt = Date.now();
      this._worked.add(conn.name);
      this._sameFailures = 0;
      this._setStatus("connected");
      this._planRefresh(conn);
    }

    // ------------------------------------------------------------ tokens

    // `&token=...` for a URL, or "" without a token.
    _tokenParam() {
      return this._token ? "token=" + encodeURIComponent(this._token) : "";
    }

    // A fresh token from getToken(); on failure the old one stays (and is reported).
    _fetchToken() {
      return Promise.resolve()
        .then(() => this.options.getToken())
        .then(
          (t) => {
            if (t) this._token = String(t);
          },
          (e) => this._error("getToken failed: " + ((e && e.message) || e)),
        );
    }

    _stopRefresh() {
      if (this._refreshTimer !== null) clearTimeout(this._refreshTimer);
      this._refreshTimer = null;
    }

    // Before the token's exp: a new token, handed to the connection (`conn.refresh`).
    _planRefresh(conn) {
      this._stopRefresh();
      const exp = this._token ? tokenExp(this._token) : null;
      if (!this._canRefresh || exp === null) return;
      const left = exp * 1000 - Date.now();
      const delay = Math.max(0, left - Math.min(this.options.refreshLeadMs, left / 2));
      this._refreshTimer = setTimeout(() => {
        this._refreshTimer = null;
        this._fetchToken().then(() => {
          if (this._isCurrent(conn) && conn.refresh) conn.refresh();
        });
      }, delay);
    }

    // "forbidden channel C": C cannot be joined with this token; stop asking.
    _forbidden(reason) {
      this._error("server: " + reason);
      if (typeof reason !== "string" || !reason.startsWith(FORBIDDEN)) return false;
      const ch = this._channels.get(reason.slice(FORBIDDEN.length));
      if (ch) this._channels.delete(ch.name);
      return true;
    }

    // The channel set changed on a transport that carries it in the URL (sse, poll):
    // open a new request at once with every channel at its position. Not a failure.
    _reopen(conn) {
      if (!this._isCurrent(conn)) return;
      this._shutdown(conn);
      this._conn = null;
      this._connect();
    }

    // The connection `conn` is gone (closed, failed, errored): plan the next one.
    _lost(conn, reason) {
      if (!this._isCurrent(conn)) return;
      this._shutdown(conn);
      this._conn = null;
      for (const ch of this._channels.values()) {
        ch.ready = false;
        ch.sent = null;
      }
      let delay;
      if (conn.opened) {
        // A drop: come back on the same transport.
        if (Date.now() - conn.openedAt >= this.options.stableMs) this._attempt = 0;
        delay = this._backoff();
      } else if (this._worked.has(conn.name) && ++this._sameFailures <= this.options.sameTransportRetries) {
        // It worked before: the server may be restarting; try it again, later.
        delay = this._backoff();
      } else {
        // Never opened (e.g. disabled: 404) or keeps failing: the next transport.
        this._sameFailures = 0;
        this._index += 1;
        if (this._index >= this.transports.length) {
          this._index = 0;
          delay = this._backoff();
        } else {
          delay = 0;
        }
      }
      this._setStatus("reconnecting", { reason, delay, next: this.transports[this._index] });
      this._schedule(delay);
    }

    _backoff() {
      const o = this.options;
      const span = Math.min(o.backoffCapMs, o.backoffBaseMs * Math.pow(2, this._attempt));
      this._attempt = Math.min(this._attempt + 1, 20);
      return o.minReconnectMs + Math.floor(Math.random() * span);
    }

    _setStatus(status, extra) {
      this.status = status;
      const info = Object.assign({ transport: this.transport }, extra || {});
      for (const fn of this._statusFns.slice()) {
        try {
          fn(status, info);
        } catch (e) {
          this._error("onStatus threw: " + e);
        }
      }
    }

    _error(message) {
      if (typeof this.options.onError === "function") {
        try {
          this.options.onError(message);
          return;
        } catch (_) {
          /* fall through */
        }
      }
      if (typeof console !== "undefined") console.error("halley.js: " + message);
    }

    // ------------------------------------------------------------ messages

    // A `subscribed` reply (WebSocket) or event (SSE) for the subscription last sent.
    _onSubscribed(reply) {
      if (!isObject(reply)) return;
      const ch = this._channels.get(reply.channel);
      if (!ch) return;
      const sent = ch.sent || { since: null, epoch: null };
      ch.sent = null;
      const last = typeof reply.seq === "number" ? reply.seq : null;
      const epoch = reply.epoch != null ? String(reply.epoch) : null;
      const resumed = sent.since !== null;
      const epochChanged = resumed && sent.epoch !== null && epoch !== null && sent.epoch !== epoch;
      let recovered = true;
      if (!resumed) {
        // Live only: the pushes that follow start at last + 1.
        ch.seq = last;
      } else if (typeof reply.recovered === "boolean") {
        recovered = reply.recovered;
        // Recovered: keep ch.seq at `since`, the catch-up (since+1 .. last) follows.
        // Not recovered: the server sends what history holds; with a new numbering
        // (epoch changed, or the channel is behind us) take all of it.
        if (!recovered && (epochChanged || (last !== null && last < sent.since))) ch.seq = 0;
      } else {
        // A server without resume sends no catch-up: what lies in between is lost.
        recovered = !epochChanged && last === sent.since;
        ch.seq = last;
      }
      if (epoch !== null) ch.epoch = epoch;
      ch.ready = true;
      this._notify(ch, resumed, {
        channel: ch.name,
        recovered,
        since: sent.since,
        seq: last,
        epoch: ch.epoch,
        epochChanged,
        transport: this.transport,
      });
    }

    _notify(ch, resumed, info) {
      for (const sub of Array.from(ch.subs)) {
        try {
          if (typeof sub.onSubscribed === "function") sub.onSubscribed(info);
          if (resumed && typeof sub.onResume === "function") sub.onResume(info);
        } catch (e) {
          this._error("onSubscribed/onResume threw: " + e);
        }
      }
    }

    // A push {"channel","seq","data"}: hand it to the app unless it is a duplicate.
    _onPush(msg, requireReady) {
      if (!isObject(msg)) return;
      const ch = this._channels.get(msg.channel);
      if (!ch) return;
      if (requireReady && !ch.ready) return;
      if (typeof msg.seq === "number") {
        if (ch.seq !== null && msg.seq <= ch.seq) return; // seen already
        ch.seq = msg.seq;
      }
      for (const sub of Array.from(ch.subs)) {
        try {
          sub.handler(msg.data, msg);
        } catch (e) {
          this._error("handler for " + ch.name + " threw: " + e);
        }
      }
    }

    // channel=a,b&since=12,7&epoch=k3x9,q1w2 (positional; empty entry = no position)
    _query(chans) {
      const q = ["channel=" + chans.map((c) => enc(c.name)).join(",")];
      if (chans.some((c) => c.seq !== null)) {
        q.push("since=" + chans.map((c) => (c.seq !== null ? c.seq : "")).join(","));
        if (chans.some((c) => positionEpoch(c) !== null)) {
          q.push("epoch=" + chans.map((c) => (positionEpoch(c) !== null ? enc(positionEpoch(c)) : "")).join(","));
        }
      }
      const tokenParam = this._tokenParam();
      if (tokenParam) q.push(tokenParam);
      return q.join("&");
    }

    // ------------------------------------------------------------ WebSocket

    _openWs(conn) {
      const tokenParam = this._tokenParam();
      const url = this.baseUrl.replace(/^http/, "ws") + "/ws" + (tokenParam ? "?" + tokenParam : "");
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        setTimeout(() => this._lost(conn, "ws: " + e.message), 0);
        return;
      }
      ws.binaryType = "arraybuffer";
      conn.shutdown = () => {
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
      };
      const send = (obj) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
      };
      const subscribe = (ch) => {
        const cmd = { op: "subscribe", channel: ch.name };
        if (ch.seq !== null) {
          cmd.since = ch.seq;
          if (positionEpoch(ch) !== null) cmd.epoch = positionEpoch(ch);
        }
        ch.sent = { since: ch.seq, epoch: positionEpoch(ch) };
        ch.ready = false;
        send(cmd);
      };
      ws.onopen = () => {
        if (!this._isCurrent(conn)) return;
        this._opened(conn);
        for (const ch of this._channels.values()) subscribe(ch);
      };
      ws.onmessage = (ev) => {
        if (!this._isCurrent(conn)) return;
        const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data);
        const msg = parseJson(text);
        if (!isObject(msg)) return;
        if (msg.op === "subscribed") this._onSubscribed(msg);
        else if (msg.op === "error") this._forbidden(msg.reason);
        else if (msg.op === "refreshed") this._planRefresh(conn);
        else if (msg.op === undefined) this._onPush(msg, true);
      };
      ws.onerror = () => {}; // a close event follows
      ws.onclose = (ev) => {
        // 3000: no, bad or expired token: get a new one first. 3003: a channel this
        // token may not join: reported and dropped, the rest reconnect.
        if (ev.code === 3000) this._needToken = true;
        if (ev.code === 3003) this._forbidden(ev.reason);
        this._lost(conn, "ws closed " + ev.code + (ev.reason ? " " + ev.reason : ""));
      };
      conn.refresh = () => send({ op: "refresh", token: this._token });
      conn.channelAdded = (ch) => {
        if (ws.readyState === WebSocket.OPEN) subscribe(ch);
      };
      conn.channelRemoved = (ch) => send({ op: "unsubscribe", channel: ch.name });
    }

    // ------------------------------------------------------------ Server-Sent Events

    _openSse(conn) {
      conn.channelAdded = conn.channelRemoved = () => this._reopen(conn);
      const chans = Array.from(this._channels.values());
      if (chans.length === 0) {
        clearTimeout(conn.openTimer); // nothing to stream; a subscribe() reopens
        conn.openTimer = null;
        this._setStatus("idle");
        return;
      }
      if (typeof EventSource !== "function") {
        setTimeout(() => this._lost(conn, "sse: no EventSource"), 0);
        return;
      }
      for (const ch of chans) {
        ch.sent = { since: ch.seq, epoch: positionEpoch(ch) };
        ch.ready = false;
      }
      const es = new EventSource(this.baseUrl + "/sse?" + this._query(chans));
      // A fresh token rides on a new stream.
      conn.refresh = () => this._reopen(conn);
      es.addEventListener("expired", () => {
        this._needToken = true;
        this._lost(conn, "sse: token expired");
      });
      conn.shutdown = () => {
        es.onopen = es.onmessage = es.onerror = null;
        es.close();
      };
      es.onopen = () => {
        if (this._isCurrent(conn)) this._opened(conn);
      };
      es.addEventListener("subscribed", (ev) => {
        if (this._isCurrent(conn)) this._onSubscribed(parseJson(ev.data));
      });
      es.onmessage = (ev) => {
        if (!this._isCurrent(conn)) return;
        const msg = parseJson(ev.data);
        if (!isObject(msg)) return;
        if (msg.op === "subscribed") this._onSubscribed(msg);
        else if (msg.op === undefined) this._onPush(msg, false);
      };
      // Any error: close it and reconnect ourselves with since/epoch in the URL.
      es.onerror = () => this._lost(conn, "sse error");
    }

    // ------------------------------------------------------------ long-polling

    _openPoll(conn) {
      conn.channelAdded = conn.channelRemoved = () => this._reopen(conn);
      conn.shutdown = () => {
        if (conn.abort) conn.abort.abort();
      };
      // A held poll keeps the token it was sent with: re-poll with the fresh one.
      conn.refresh = () => this._reopen(conn);
      this._planRefresh(conn); // not at the first answer, which may come after exp
      this._pollLoop(conn);
    }

    async _pollLoop(conn) {
      let first = true;
      let quick = 0; // empty answers in a row that came back at once
      while (this._isCurrent(conn)) {
        if (quick > 0) {
          // An empty answer comes after the server's hold; one at once means
          // something is off (not recovered, over and over): do not spin.
          const span = Math.min(this.options.backoffCapMs, this.options.backoffBaseMs * Math.pow(2, quick - 1));
          await new Promise((r) => setTimeout(r, span / 2 + Math.random() * (span / 2)));
          if (!this._isCurrent(conn)) return;
        }
        const chans = Array.from(this._channels.values());
        if (chans.length === 0) {
          this._setStatus("idle"); // a subscribe() reopens
          return;
        }
        const sent = chans.map((ch) => ({ ch, since: ch.seq, epoch: positionEpoch(ch) }));
        const url = this.baseUrl + "/poll?" + this._query(chans);
        const ac = new AbortController();
        conn.abort = ac;
        const timer = setTimeout(() => ac.abort(), this.options.pollTimeoutMs);
        let body;
        const asked = Date.now();
        try {
          const res = await fetch(url, { signal: ac.signal, cache: "no-store", headers: { Accept: "application/json" } });
          if (res.status === 401) this._needToken = true;
          if (res.status === 403) {
            const reason = await res.text();
            if (this._forbidden(reason) && this._channels.size > 0) {
              clearTimeout(timer);
              continue;
            }
          }
          if (!res.ok) throw new Error("HTTP " + res.status);
          body = await res.json();
          if (!isObject(body)) throw new Error("not a JSON object");
        } catch (e) {
          clearTimeout(timer);
          this._lost(conn, "poll: " + ((e && e.message) || e)); // no-op after close/reopen
          return;
        }
        clearTimeout(timer);
        if (!this._isCurrent(conn)) return;
        this._opened(conn);
        this._onPollBody(body, sent, first);
        first = false;
        const empty = !Array.isArray(body.messages) || body.messages.length === 0;
        quick = empty && Date.now() - asked < 500 ? Math.min(quick + 1, 16) : 0;
      }
    }

    // {"messages":[...],"last_seq":N,"epoch":E,"recovered":B} for one channel,
    // {"messages":[...],"channels":{"a":{"last_seq","epoch","recovered"},...}} for several.
    _onPollBody(body, sent, first) {
      const multi = isObject(body.channels);
      const infos = new Map();
      for (const s of sent) {
        const ch = s.ch;
        if (this._channels.get(ch.name) !== ch) continue; // unsubscribed meanwhile
        const info = multi ? body.channels[ch.name] : body;
        if (!isObject(info)) continue;
        infos.set(ch.name, { ch, info });
        const last = typeof info.last_seq === "number" ? info.last_seq : null;
        const epoch = info.epoch != null ? String(info.epoch) : null;
        const resumed = s.since !== null;
        const recovered = info.recovered !== false;
        const epochChanged = resumed && s.epoch !== null && epoch !== null && s.epoch !== epoch;
        if (resumed && !recovered && (epochChanged || (last !== null && last < s.since))) ch.seq = 0;
        if (epoch !== null) ch.epoch = epoch;
        const report = {
          channel: ch.name,
          recovered,
          since: s.since,
          seq: last,
          epoch: ch.epoch,
          epochChanged,
          transport: "poll",
        };
        // Tell the app on the first answer after a (re)connect, and whenever a
        // resume was not recovered.
        if (first) this._notify(ch, resumed, report);
        else if (resumed && !recovered) this._notify(ch, true, report);
      }
      const messages = Array.isArray(body.messages) ? body.messages : [];
      for (const m of messages) {
        if (isObject(m) && infos.has(m.channel)) this._onPush(m, false);
      }
      // The next poll asks from last_seq.
      for (const [name, { ch, info }] of infos) {
        if (this._channels.get(name) === ch && typeof info.last_seq === "number") ch.seq = info.last_seq;
      }
    }
  }

  Halley.TRANSPORTS = TRANSPORTS.slice();
  Halley.version = "1";

  global.Halley = Halley;
  if (typeof module === "object" && module && module.exports) module.exports = Halley;
})(typeof window !== "undefined" ? window : globalThis);
