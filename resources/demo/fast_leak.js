// oomscope demo: a fast leaker. Idles for three seconds, then grows 10 MiB a second. Run
// inside a 96 MiB memory cgroup the kernel's OOM killer ends it with SIGKILL; with --heap
// (no cgroup possible) it leaks JavaScript objects instead and hits V8's heap limit.
const heap = process.argv.includes("--heap");
const kept = [];
console.error(`fast-leak: starting (${heap ? "V8 heap" : "buffers"})`);
setTimeout(() => {
  setInterval(() => {
    if (heap) {
      const chunk = [];
      for (let i = 0; i < 40000; i++) chunk.push({ i, s: "x" + i });
      kept.push(chunk);
    } else {
      kept.push(Buffer.alloc(2 << 20, kept.length & 0xff));
    }
    if (kept.length % 10 === 0) console.error(`fast-leak: ${kept.length} chunks kept`);
  }, 200);
}, 3000);
