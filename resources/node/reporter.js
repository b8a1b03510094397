'use strict';
/*
 * oomscope heap reporter for Node.js.
 *
 * oomscope preloads this file into every worker it launches (`--require` on the node command
 * line and in NODE_OPTIONS). It runs once in the main thread and once in every worker_threads
 * Worker: each thread opens its own connection to oomscope's Unix socket and writes one JSON
 * object per line (schema: core/heap/messages.py):
 *
 *   {"type":"hello","v":1,"kind":"node","pid":…,"threadId":…,"isMainThread":…,
 *    "resourceLimits":{…}|null,"node":"v20.…"}                       first line of a connection
 *   {"type":"heap","t":…,"used":…,"total":…,"limit":…,"oldUsed":…,"oldLimit":…,
 *    "external":…,"arrayBuffers":…,"rss":…|null,"dropped":…}         every interval
 *   {"type":"end","threadId":…,"cause":"heap-oom","message":…}       a Worker this thread
 *                                                                     started died of its heap
 *
 * The worker must behave exactly as without oomscope: nothing here may throw into the app, write
 * to stdout/stderr, keep the event loop alive, or change how the app's own objects behave.
 */
(function oomscopeHeapReporter() {
  // A global symbol, not a module-level flag: the same file can be preloaded twice (command line
  // and NODE_OPTIONS) or from two copies at different paths, and each thread has its own global.
  const LOADED = Symbol.for('oomscope.heap.reporter');
  const ENV_DATA_KEY = 'oomscope.heap.config';
  const MiB = 1048576;

  try {
    if (globalThis[LOADED]) return;
    Object.defineProperty(globalThis, LOADED, { value: true, enumerable: false });
    start();
  } catch (_) {
    // Whatever went wrong, the app runs on without a reporter.
  }

  function readConfig(wt) {
    // A worker created with `env: {}` has an empty process.env, so the socket path also travels
    // as environment data, which every Worker inherits from the thread that creates it.
    let cfg = null;
    try {
      if (typeof wt.getEnvironmentData === 'function') cfg = wt.getEnvironmentData(ENV_DATA_KEY);
    } catch (_) {
      cfg = null;
    }
    if (!cfg || typeof cfg.socket !== 'string' || cfg.socket === '') {
      const socket = process.env.OOMSCOPE_HEAP_SOCKET;
      if (typeof socket !== 'string' || socket === '') return null;
      cfg = { socket, intervalMs: Number(process.env.OOMSCOPE_HEAP_INTERVAL_MS) };
    }
    let intervalMs = Number(cfg.intervalMs);
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) intervalMs = 1000;
    intervalMs = Math.min(Math.max(intervalMs, 50), 60000);
    return { socket: cfg.socket, intervalMs };
  }

  // --- old-generation limit ---------------------------------------------------------------
  //
  // heap_size_limit is V8's old-generation limit plus the young generation (three semi-spaces:
  // two for the scavenger, one for new large objects). V8 dies when the old generation reaches
  // its limit, so that limit is what "percent of heap limit" must compare with. Rules, first that
  // applies:
  //  1. worker thread: resourceLimits.maxOldGenerationSizeMb — Node fills it in for every worker
  //     with the value it gave V8, defaults included;
  //  2. --max-old-space-size=N in process.execArgv or NODE_OPTIONS (the command line wins);
  //  3. --max-semi-space-size=S given: young = 3 × S MiB, old = heap_size_limit − young;
  //  4. otherwise V8 sized both from the machine's (or cgroup's) memory: invert
  //     heap_size_limit = old + 3 × semi(old), semi(old) = old / 256 (old ≤ 256 MiB) or old / 128,
  //     clamped to [1, 16] MiB and rounded up to V8's 256 KiB page (V8 11.x, 64-bit).
  function flagMiB(name) {
    const re = new RegExp('(?:^|\\s)--' + name + '[=\\s]+"?(\\d+(?:\\.\\d+)?)');
    const alt = new RegExp('(?:^|\\s)--' + name.replace(/-/g, '_') + '[=\\s]+"?(\\d+(?:\\.\\d+)?)');
    let found = null;
    for (const source of [process.env.NODE_OPTIONS || '', process.execArgv.join(' ')]) {
      for (const r of [re, alt]) {
        const m = r.exec(source);
        if (m) found = Number(m[1]);
      }
    }
    return found;
  }

  function youngFromOld(oldBytes) {
    const PAGE = 256 * 1024;
    const ratio = oldBytes <= 256 * MiB ? 256 : 128;
    let semi = Math.min(Math.max(oldBytes / ratio, 1 * MiB), 16 * MiB);
    semi = Math.ceil(semi / PAGE) * PAGE;
    return 3 * semi;
  }

  function oldLimitFrom(heapSizeLimit, isMainThread, limits) {
    if (!isMainThread && limits && limits.maxOldGenerationSizeMb > 0) {
      return Math.round(limits.maxOldGenerationSizeMb * MiB);
    }
    const oldFlag = flagMiB('max-old-space-size');
    if (oldFlag !== null && oldFlag > 0) return Math.min(Math.round(oldFlag * MiB), heapSizeLimit);
    const semiFlag = flagMiB('max-semi-space-size');
    if (semiFlag !== null && semiFlag > 0) return Math.max(heapSizeLimit - 3 * semiFlag * MiB, 0);
    // old + youngFromOld(old) grows strictly with old: binary search in 256 KiB pages.
    const PAGE = 256 * 1024;
    let lo = 0;
    let hi = Math.floor(heapSizeLimit / PAGE);
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (mid * PAGE + youngFromOld(mid * PAGE) <= heapSizeLimit) lo = mid;
      else hi = mid - 1;
    }
    return lo * PAGE;
  }

  // The spaces V8 counts against the old-generation limit (OldGenerationSizeOfObjects): a leak of
  // large strings or arrays grows large_object_space, not old_space.
  const OLD_GENERATION_SPACES = new Set([
    'old_space', 'code_space', 'map_space', 'large_object_space', 'code_large_object_space',
  ]);

  function start() {
    const wt = require('worker_threads');
    const cfg = readConfig(wt);
    if (cfg === null) return;
    try {
      if (typeof wt.setEnvironmentData === 'function') {
        wt.setEnvironmentData(ENV_DATA_KEY, { socket: cfg.socket, intervalMs: cfg.intervalMs });
      }
    } catch (_) {
      // Workers created with `env: {}` will not report; everything else still does.
    }
    // In a worker thread these two load 16 modules and bindings and keep ~140 KB of its heap; a
    // sample allocates a few small objects. Node gives a worker that reaches its resourceLimits 16 MiB
    // of leeway to end cleanly, so the reporter cannot be what turns ERR_WORKER_OUT_OF_MEMORY
    // into a process abort, and measured, it does not (docs/heap.md, bench_node_worker_oom.py).
    const net = require('net');
    const v8 = require('v8');

    const isMain = wt.isMainThread;
    const limits = isMain ? null : wt.resourceLimits;
    const hello = JSON.stringify({
      type: 'hello',
      v: 1,
      kind: 'node',
      pid: process.pid,
      threadId: wt.threadId,
      isMainThread: isMain,
      resourceLimits: limits ? Object.assign({}, limits) : null,
      node: process.version,
    }) + '\n';

    const MAX_BUFFERED_BYTES = 16384;
    const MAX_PENDING_ENDS = 64;
    // process.memoryUsage() reads /proc/self/stat for rss on every call; workers need it only
    // for arrayBuffers, which moves slowly enough to refresh once a second.
    const ARRAY_BUFFERS_EVERY_MS = 1000;

    let sock = null;
    let connected = false;
    let backoffMs = 250;
    let dropped = 0;
    let oldLimit = null;
    let lastHeapLimit = null;
    let arrayBuffers = null;
    let arrayBuffersAt = -Infinity;
    const pendingEnds = [];

    function connect() {
      let s;
      try {
        s = net.createConnection({ path: cfg.socket });
      } catch (_) {
        reconnectLater();
        return;
      }
      sock = s;
      // Our socket must never be the reason a thread or the process stays alive.
      s.unref();
      s.on('error', () => {});
      s.on('connect', () => {
        if (sock !== s) return;
        connected = true;
        backoffMs = 250;
        s.write(hello);
        while (pendingEnds.length > 0) s.write(pendingEnds.shift());
        sample();
      });
      s.on('close', () => {
        if (sock !== s) return;
        sock = null;
        connected = false;
        reconnectLater();
      });
      // oomscope sends nothing; reading only lets us see it close the connection.
      s.on('data', () => {});
    }

    function reconnectLater() {
      const t = setTimeout(() => {
        try {
          connect();
        } catch (_) {
          reconnectLater();
        }
      }, backoffMs);
      t.unref();
      backoffMs = Math.min(backoffMs * 2, 30000);
    }

    function send(line) {
      const s = sock;
      if (!connected || s === null || s.destroyed) return false;
      // A socket that backs up means oomscope is not reading: drop rather than buffer in the app.
      if (s.writableNeedDrain || s.writableLength > MAX_BUFFERED_BYTES) return false;
      s.write(line);
      return true;
    }

    function sample() {
      try {
        if (!connected) return;
        const h = v8.getHeapStatistics();
        if (h.heap_size_limit !== lastHeapLimit) {
          // V8 may raise its limit at run time (near-heap-limit callbacks): follow it.
          lastHeapLimit = h.heap_size_limit;
          oldLimit = oldLimitFrom(h.heap_size_limit, isMain, limits);
        }
        let oldUsed = 0;
        for (const space of v8.getHeapSpaceStatistics()) {
          if (OLD_GENERATION_SPACES.has(space.space_name)) oldUsed += space.space_used_size;
        }
        let rss = null;
        let external = typeof h.external_memory === 'number' ? h.external_memory : null;
        const now = Date.now();
        if (isMain) {
          // The main thread needs rss anyway, and memoryUsage() costs the same as rss() alone.
          const m = process.memoryUsage();
          rss = m.rss;
          external = m.external;
          arrayBuffers = m.arrayBuffers;
        } else if (now - arrayBuffersAt >= ARRAY_BUFFERS_EVERY_MS) {
          const m = process.memoryUsage();
          arrayBuffers = m.arrayBuffers;
          if (external === null) external = m.external;
          arrayBuffersAt = now;
        }
        const line = '{"type":"heap","t":' + now / 1000 +
          ',"used":' + h.used_heap_size +
          ',"total":' + h.total_heap_size +
          ',"limit":' + h.heap_size_limit +
          ',"oldUsed":' + oldUsed +
          ',"oldLimit":' + oldLimit +
          ',"external":' + external +
          ',"arrayBuffers":' + arrayBuffers +
          ',"rss":' + rss +
          ',"dropped":' + dropped + '}\n';
        if (send(line)) dropped = 0;
        else dropped += 1;
      } catch (_) {
        dropped += 1;
      }
    }

    function noteWorkerError(threadId, err) {
      if (!err || err.code !== 'ERR_WORKER_OUT_OF_MEMORY') return;
      const line = JSON.stringify({
        type: 'end',
        threadId,
        cause: 'heap-oom',
        message: String(err.message).slice(0, 500),
      }) + '\n';
      if (!send(line) && pendingEnds.length < MAX_PENDING_ENDS) pendingEnds.push(line);
    }

    // A Worker that exceeds its resourceLimits dies with an 'error' event
    // (ERR_WORKER_OUT_OF_MEMORY) on its Worker object in this thread. An 'error' listener would
    // change the app: without one, Node rethrows the error and the process dies. A listener on
    // events.errorMonitor sees the error first and changes nothing (not the listener count, not
    // the crash, not the "Emitted 'error' event at" stack Node prints). The 'worker' event fires
    // (next tick) for every Worker this thread creates; the thread id is taken then because the
    // Worker forgets it (-1) before it emits the error.
    const errorMonitor = require('events').errorMonitor;
    if (errorMonitor !== undefined) {
      process.on('worker', (worker) => {
        try {
          const threadId = worker.threadId;
          worker.on(errorMonitor, (err) => {
            try {
              noteWorkerError(threadId, err);
            } catch (_) {
              // Best effort: the Worker's end still shows as its connection closing.
            }
          });
        } catch (_) {
          // This Worker's heap-oom then shows only as its connection ending.
        }
      });
    }

    const timer = setInterval(sample, cfg.intervalMs);
    timer.unref();
    connect();
  }
})();
