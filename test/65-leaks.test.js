'use strict';
// Leaks: the resident set stays flat over 500 forward calls, 500 fullDiff calls, 500 streamed
// samples (streamDiff, a quarter of them left early), 100 rounds of 8 concurrent fullDiff calls (every algorithm), 100 aborted
// calls and 100 load/dispose cycles. Each runs in its own child process (with --expose-gc), so
// other tests' allocations do not blur the numbers.
//
// The bound: the synthetic model is sized so that a leak would be obvious. Every forward
// allocates 1 MiB of logits (64 × 4096 floats) and every fullDiff step 0.5 MiB (32 × 4096); one
// model is about 1.3 MiB of weights plus its TorchScript graph. Leaking any one of those per call
// would grow the RSS by 100 MiB or more over the loop; the bound of 16 MiB leaves room for V8's
// heap settling after the warm-up and for allocator noise. The children run with
// MALLOC_ARENA_MAX=1: otherwise glibc keeps memory freed on one thread in another thread's arena
// (a model is built on a pool thread and freed on the main thread), which blurs the numbers.
// Load/dispose cycles warm up over ~30 cycles (libtorch and V8 reach a plateau about 70 MiB up:
// 50 and 200 cycles after 10 warm-ups end at the same RSS), hence 40 warm-up cycles there; its
// RSS still swings by tens of MiB either way between runs (seen: −39 to +20 MiB), so its bound
// is 48 MiB — leaking one model per cycle would add 130 MiB or more.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { tempDir } = require('./helpers/reference');
const { runChild, assertCleanExit } = require('./helpers/child');

const BOUND_MIB = 16;
const LOAD_BOUND_MIB = 48;

describe('leaks: RSS stays flat', function () {
  this.timeout(180000);
  let tmp;
  const report = [];

  before(() => {
    tmp = tempDir('leak');
    makeEpsilonCheckpoint(path.join(tmp, 'm'), { hiddenSize: 32, nHeads: 2, nBlocks: 1, length: 64, vocabTokens: 4095 });
  });
  after(() => {
    for (const r of report) console.log(`      ${r.phase} × ${r.n}: RSS ${r.before.toFixed(1)} MiB → ${r.mid.toFixed(1)} → ${r.after.toFixed(1)} MiB (${(r.after - r.before >= 0 ? '+' : '') + (r.after - r.before).toFixed(1)} MiB)`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const phases = [
    ['forward', 500, 50],
    ['fullDiff', 500, 50],
    ['stream', 500, 50],
    ['batched', 100, 20],
    ['abort', 100, 20],
    ['load', 100, 40],
  ];
  for (const [phase, n, warmup] of phases) {
    const bound = phase === 'load' ? LOAD_BOUND_MIB : BOUND_MIB;
    it(`${phase}: ${n} calls after ${warmup} warm-up calls grow the RSS by less than ${bound} MiB`, async () => {
      const code = fs.readFileSync(path.join(__dirname, 'helpers', 'leak-child.js'), 'utf8').replace("'../../dist'", "'./dist'");
      const r = await runChild(code, {
        nodeArgs: ['--expose-gc'],
        args: [JSON.stringify({ dir: path.join(tmp, 'm'), cache: path.join(tmp, 'cache'), phase, n, warmup })],
        timeoutMs: 170000,
        env: { MALLOC_ARENA_MAX: '1' },
      });
      assertCleanExit(assert, r, 0);
      report.push(r.result);
      // A leak grows the RSS in both halves of the loop; allocator and V8 noise settles. So the
      // whole loop may exceed the bound only if its second half stays within half of it.
      const { before, mid, after } = r.result;
      assert.ok(after - before < bound || after - mid < bound / 2,
        `${phase}: RSS ${before.toFixed(1)} → ${mid.toFixed(1)} (halfway) → ${after.toFixed(1)} MiB`);
    });
  }
});
