// oomscope demo: a steady worker. Holds its working set and churns a little per "request".
const held = Buffer.alloc(40 << 20, 1);
let requests = 0;
setInterval(() => {
  const scratch = Buffer.alloc(2 << 20, requests & 0xff);
  held[requests % held.length] = scratch[0];
  requests += 1;
  if (requests % 240 === 0) console.error(`steady: ${requests} requests served`);
}, 250);
