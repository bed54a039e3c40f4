'use strict';
// Child process of test/62-hostile-files.test.js: loads every path given (JSON on argv) and
// prints RESULT:[{ name, ok, code, message, errorClass }]. A load that succeeds also runs one
// forward pass, so a file that parsed but holds nonsense is exercised too.
const { smartModelLoader, HdlmError } = require('../../dist');

(async () => {
  const { cases, cacheDir } = JSON.parse(process.argv[process.argv.length - 1]);
  const out = [];
  for (const c of cases) {
    const r = { name: c.name };
    try {
      const { model } = await smartModelLoader(c.path, { device: 'cpu', torchscriptCacheDir: cacheDir, useCache: c.useCache ?? true });
      try {
        const logits = await model.forward([[1, 2, 3]]);
        r.ok = true;
        r.shape = logits.shape;
      } finally {
        model.dispose();
      }
    } catch (e) {
      r.ok = false;
      r.hdlm = e instanceof HdlmError;
      r.code = e && e.code;
      r.errorClass = e && e.constructor && e.constructor.name;
      r.message = String(e && e.message).slice(0, 400);
    }
    out.push(r);
  }
  console.log('RESULT:' + JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(3);
});
