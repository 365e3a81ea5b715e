/*!
 * pushd-client.js: a small, dependency-free browser client for pushd.
 * MIT OR Apache-2.0.
 *
 * Connects, sends the uid (or a token) as its first message, hands every push to
 * `onMessage`, and reconnects with exponential backoff and jitter after heartbeat
 * timeouts, server restarts (1001), drains before a deploy (1012) and network
 * failures. It stays disconnected after a
 * close that means "do not come back": kicked (4000), banned (4003), replaced by a
 * newer page of the same uid (4004), refused (1008).
 *
 * It keeps its place: it speaks the `pushd.v2` subprotocol, in which every push
 * carries an id, remembers the last id in sessionStorage (per tab, so a reload or
 * a navigation to another page of the site in the same tab keeps it) and
 * reconnects with `?since=ID`, so pushd sends what it missed, with no gap and no
 * duplicate. When pushd no longer holds all of it (away longer than its
 * --mailbox-ttl, or pushd restarted), `onGap` is called first: reload what the
 * page shows from the backend then. `resume: false` turns this off.
 *
 * Behind a proxy that refuses WebSocket it falls back to Server-Sent Events on the
 * same address (`transports`, default ["websocket", "sse"]): after two WebSocket
 * attempts in a row that fail before opening, it connects with EventSource, with the
 * same callbacks, states and resume; the next page load tries WebSocket again.
 * `client.transport` (and `info.transport` when online) says which is in use.
 *
 *   const client = new PushdClient("ws://push.example.com:1234/", {
 *     uid: "42",                                   // or token: "..." / async () => "..."
 *     onMessage: (text, { id }) => show(JSON.parse(text)),
 *     onGap: () => refreshFromBackend(),
 *     onState: (state, info) => console.log(state, info),
 *   });
 *   client.start();
 *
 * States passed to onState: "connecting", "online", "reconnecting" (info.delay ms
 * until the next attempt), and the final ones "kicked", "banned", "replaced",
 * "refused", "stopped". info carries the close code and reason when there is one.
 *
 * Load it with <script src="pushd-client.js"> (it defines window.PushdClient) or
 * require() it from a bundler.
 */
(function (root) {
  "use strict";

  /** Close codes after which reconnecting would be wrong, and the state each one ends in. */
  var FINAL_CLOSE_CODES = {
    4000: "kicked",
    4003: "banned",
    4004: "replaced",
    1008: "refused",
  };

  var DEFAULTS = {
    uid: null,
    token: null,
    tokenInQuery: false,
    minDelay: 1000,
    maxDelay: 30000,
    stableAfter: 10000,
    resume: true,
    transports: ["websocket", "sse"],
    storage: null,
    onMessage: function () {},
    onGap: function () {},
    onState: function () {},
  };

  /** The subprotocol of clients that keep their place. */
  var SUBPROTOCOL = "pushd.v2";

  /** What pushd sends first when it no longer holds everything after `since`. */
  var GAP = "!gap";

  /** WebSocket attempts in a row that fail before opening, after which SSE is used. */
  var WEBSOCKET_FAILURES_BEFORE_SSE = 2;

  /** The event stream's URL for a WebSocket URL: same host, port and path, over HTTP. */
  function eventStreamUrl(url) {
    return url.replace(/^ws(s?):/i, "http$1:");
  }

  /** sessionStorage when the page may use it, else a map that lasts as long as the page. */
  function defaultStorage() {
    try {
      var storage = root.sessionStorage;
      var probe = "pushd-client:probe";
      storage.setItem(probe, probe);
      storage.removeItem(probe);
      return storage;
    } catch (error) {
      var items = {};
      return {
        getItem: function (key) { return items.hasOwnProperty(key) ? items[key] : null; },
        setItem: function (key, value) { items[key] = String(value); },
      };
    }
  }

  /**
   * The wait before reconnect attempt `attempt` (0 for the first retry): exponential
   * growth from minDelay up to maxDelay, with "equal jitter" (half fixed, half random)
   * so that pages thrown out together by a restart do not all come back at once.
   */
  function backoffDelay(attempt, minDelay, maxDelay, random) {
    var ceiling = Math.min(maxDelay, minDelay * Math.pow(2, Math.min(attempt, 30)));
    return Math.round(ceiling / 2 + (random || Math.random)() * (ceiling / 2));
  }

  /** The final state a close code leads to, or null when the client should reconnect. */
  function finalStateFor(code) {
    return Object.prototype.hasOwnProperty.call(FINAL_CLOSE_CODES, code)
      ? FINAL_CLOSE_CODES[code]
      : null;
  }

  function PushdClient(url, options) {
    if (!(this instanceof PushdClient)) return new PushdClient(url, options);
    this.url = url;
    this.options = {};
    for (var key in DEFAULTS) {
      this.options[key] =
        options && options[key] !== undefined ? options[key] : DEFAULTS[key];
    }
    if (this.options.uid == null && this.options.token == null) {
      throw new Error("PushdClient needs a uid or a token");
    }
    this.state = "stopped";
    this._socket = null;
    this._timer = null;
    this._attempt = 0;
    this._openedAt = 0;
    this._running = false;
    this._onBrowserOnline = this._reconnectNow.bind(this);
    this._storage = this.options.storage || defaultStorage();
    this._transports = this.options.transports.filter(function (t) {
      return t === "websocket" || t === "sse";
    });
    if (this._transports.length === 0) throw new Error("PushdClient needs a transport");
    this.transport = this._transports[0];
    this._websocketFailures = 0;
    this._sinceKey = "pushd-client:since:" + url + "#" +
      (this.options.uid != null ? "uid:" + this.options.uid : "token");
  }

  /** The id of the last push this tab received from this server for this uid, if any. */
  PushdClient.prototype.lastId = function () {
    try {
      return this._storage.getItem(this._sinceKey);
    } catch (error) {
      return null;
    }
  };

  PushdClient.prototype._remember = function (id) {
    try {
      this._storage.setItem(this._sinceKey, id);
    } catch (error) {
      // Storage full or gone: the next reconnect resumes from the last id that was kept.
    }
  };

  /** Hands one frame to the page: `ID PAYLOAD` (or `!gap`) under pushd.v2, else the payload. */
  PushdClient.prototype._deliver = function (socket, event) {
    var data = event.data;
    if (socket.protocol !== SUBPROTOCOL) {
      this.options.onMessage(data, { id: null, event: event });
      return;
    }
    if (data === GAP) {
      this.options.onGap({ since: this._sentSince });
      return;
    }
    var space = data.indexOf(" ");
    var id = data.slice(0, space);
    this._remember(id);
    this.options.onMessage(data.slice(space + 1), { id: id, event: event });
  };

  /** Starts connecting; does nothing when already running. */
  PushdClient.prototype.start = function () {
    if (this._running) return this;
    this._running = true;
    this._attempt = 0;
    if (root.addEventListener) root.addEventListener("online", this._onBrowserOnline);
    this._connect();
    return this;
  };

  /** Closes the connection (code 1000) and stops reconnecting. */
  PushdClient.prototype.stop = function () {
    this._halt("stopped", {});
    return this;
  };

  PushdClient.prototype._setState = function (state, info) {
    this.state = state;
    try {
      this.options.onState(state, info || {});
    } catch (error) {
      setTimeout(function () { throw error; });
    }
  };

  /** Stops for good: no socket, no timer, no listeners; `state` is final. */
  PushdClient.prototype._halt = function (state, info) {
    this._running = false;
    clearTimeout(this._timer);
    this._timer = null;
    if (root.removeEventListener) root.removeEventListener("online", this._onBrowserOnline);
    var socket = this._socket;
    this._socket = null;
    if (socket && typeof socket.send === "function") {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      if (socket.readyState <= 1) socket.close(1000, "client stopped");
    } else if (socket) {
      socket.onopen = socket.onmessage = socket.onerror = null;
      socket.close();
    }
    this._setState(state, info);
  };

  /** The browser says the network is back: skip the rest of the backoff wait. */
  PushdClient.prototype._reconnectNow = function () {
    if (this._running && this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
      this._connect();
    }
  };

  /** The uid or token to send first; a token may come from a (possibly async) function. */
  PushdClient.prototype._credential = function () {
    var token = this.options.token;
    if (token == null) return Promise.resolve(String(this.options.uid));
    return Promise.resolve(typeof token === "function" ? token() : token).then(String);
  };

  PushdClient.prototype._connect = function () {
    var self = this;
    this._setState("connecting", { attempt: this._attempt });
    this._credential().then(
      function (credential) {
        if (!self._running) return;
        if (self.transport === "sse") self._openEventStream(credential);
        else self._open(credential);
      },
      function (error) {
        if (self._running) self._retry({ error: String(error) });
      }
    );
  };

  PushdClient.prototype._open = function (credential) {
    var self = this;
    var url = this.url;
    var addParameter = function (name, value) {
      url += (url.indexOf("?") < 0 ? "?" : "&") + name + "=" + encodeURIComponent(value);
    };
    var viaQuery = this.options.token != null && this.options.tokenInQuery;
    if (viaQuery) addParameter("token", credential);
    this._sentSince = this.options.resume ? this.lastId() : null;
    if (this._sentSince) addParameter("since", this._sentSince);
    var socket;
    try {
      socket = this.options.resume ? new WebSocket(url, [SUBPROTOCOL]) : new WebSocket(url);
    } catch (error) {
      // A malformed URL will not get better by retrying.
      this._halt("refused", { error: String(error) });
      return;
    }
    this._socket = socket;
    socket.onopen = function () {
      if (!viaQuery) socket.send(credential);
      self._openedAt = Date.now();
      self._websocketFailures = 0;
      // pushd sends no bind acknowledgement: open + uid sent is as online as it gets.
      self._setState("online", { attempt: self._attempt, transport: "websocket" });
    };
    socket.onmessage = function (event) {
      self._deliver(socket, event);
    };
    socket.onclose = function (event) {
      self._socket = null;
      var info = { code: event.code, reason: event.reason };
      var final = finalStateFor(event.code);
      if (final) {
        self._halt(final, info);
        return;
      }
      // Refused before opening, again: a proxy in the way that will not carry
      // WebSocket. The event stream goes through such proxies; use it at once.
      if (!self._openedAt && (self._websocketFailures += 1) >= WEBSOCKET_FAILURES_BEFORE_SSE &&
          self._transports.indexOf("sse") >= 0) {
        self.transport = "sse";
        self._connect();
        return;
      }
      self._closed(info);
    };
  };

  /** After a connection ended without a final state: back off, then connect again. */
  PushdClient.prototype._closed = function (info) {
    // Only a connection that stayed up resets the backoff, so a server that accepts
    // and at once closes (shutting down, overloaded) is not hammered.
    if (this._openedAt && Date.now() - this._openedAt >= this.options.stableAfter) {
      this._attempt = 0;
    }
    this._openedAt = 0;
    this._retry(info);
  };

  /**
   * The Server-Sent Events transport: the uid (or token) in the URL, the place in
   * `?since=`; each event is a push (its id the push's), `gap` and `close` are pushd's.
   * EventSource would reconnect by itself; it is closed instead at every error, so that
   * one backoff, one set of states and one resume serve both transports.
   */
  PushdClient.prototype._openEventStream = function (credential) {
    var self = this;
    var url = eventStreamUrl(this.url);
    var addParameter = function (name, value) {
      url += (url.indexOf("?") < 0 ? "?" : "&") + name + "=" + encodeURIComponent(value);
    };
    addParameter(this.options.token != null ? "token" : "uid", credential);
    this._sentSince = this.options.resume ? this.lastId() : null;
    if (this._sentSince) addParameter("since", this._sentSince);
    var source;
    try {
      source = new EventSource(url);
    } catch (error) {
      this._halt("refused", { error: String(error) });
      return;
    }
    this._socket = source;
    source.onopen = function () {
      self._openedAt = Date.now();
      self._setState("online", { attempt: self._attempt, transport: "sse" });
    };
    source.onmessage = function (event) {
      if (self.options.resume && event.lastEventId) self._remember(event.lastEventId);
      self.options.onMessage(event.data, { id: event.lastEventId || null, event: event });
    };
    source.addEventListener("gap", function () {
      self.options.onGap({ since: self._sentSince });
    });
    source.addEventListener("close", function (event) {
      var info = {};
      try {
        info = JSON.parse(event.data);
      } catch (error) {
        // Not pushd's: treat it as a lost connection.
      }
      self._endEventStream(source, { code: info.code, reason: info.reason });
    });
    source.onerror = function () {
      self._endEventStream(source, {});
    };
  };

  PushdClient.prototype._endEventStream = function (source, info) {
    if (this._socket !== source) return;
    source.onopen = source.onmessage = source.onerror = null;
    source.close();
    this._socket = null;
    var final = finalStateFor(info.code);
    if (final) {
      this._halt(final, info);
      return;
    }
    this._closed(info);
  };

  PushdClient.prototype._retry = function (info) {
    var self = this;
    var delay = backoffDelay(this._attempt, this.options.minDelay, this.options.maxDelay);
    this._attempt += 1;
    info.delay = delay;
    info.attempt = this._attempt;
    this._setState("reconnecting", info);
    this._timer = setTimeout(function () {
      self._timer = null;
      if (self._running) self._connect();
    }, delay);
  };

  PushdClient.backoffDelay = backoffDelay;
  PushdClient.finalStateFor = finalStateFor;

  if (typeof module === "object" && module.exports) module.exports = PushdClient;
  else root.PushdClient = PushdClient;
})(typeof self !== "undefined" ? self : this);
