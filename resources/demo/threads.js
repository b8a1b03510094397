// oomscope demo: one Node process, three worker_threads; thread 3 leaks its heap
// (a per-thread heap view needs oomscope's heap reporter; the process RSS shows the growth).
const { Worker, isMainThread, workerData } = require("worker_threads");
if (isMainThread) {
  for (let n = 1; n <= 3; n++) {
    const w = new Worker(__filename, { workerData: { n, leak: n === 3 } });
    w.on("error", (e) => console.error(`threads: worker ${n} failed: ${e.message}`));
  }
  setInterval(() => {}, 1 << 30);
} else {
  const { n, leak } = workerData;
  const held = new Array(1 << 20).fill(n);
  let kept = [];
  setInterval(() => {
    if (!leak) { held[0] = Math.random(); return; }
    kept.push(new Array(1 << 17).fill(Math.random()));
    if (kept.length >= 1200) kept = [];  // about 1 GiB of doubles: start over
  }, leak ? 1000 : 250);
}
