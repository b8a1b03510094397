// oomscope demo: a slow leaker. Grows 4 MiB a second (a cache nobody evicts), crosses the
// demo's warning and then its critical level within a minute, and at 320 MiB drops
// everything and starts again, so the curve saw-tooths through both levels.
const STEP = 1 << 20;
const CAP = 320;
let cache = [];
setInterval(() => {
  cache.push(Buffer.alloc(STEP, cache.length & 0xff));
  if (cache.length % 40 === 0) console.error(`slow-leak: cache holds ${cache.length} MiB`);
  if (cache.length >= CAP) {
    console.error("slow-leak: cache cleared");
    cache = [];
    if (global.gc) global.gc();
  }
}, 250);
