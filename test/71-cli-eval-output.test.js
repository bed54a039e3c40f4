'use strict';
// `hdlm eval … --output` / `--output-dir`: a path that cannot be written is refused before the
// model is loaded (an evaluation must not run for an hour and then fail to save), and results
// are written through a temp file and a rename.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function cli(args, cwd) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, HDLM_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('hdlm eval: output paths checked before the work', function () {
  this.timeout(180000);
  let tmp;
  let data;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-evalout-'));
    data = path.join(tmp, 'texts.txt');
    fs.writeFileSync(data, Array.from({ length: 40 }, (_, i) => `Line ${i} of a small text about the jury and the city of Atlanta.`).join('\n'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  // A model that does not exist: if the output were checked after loading, the error would be about the model.
  const missingModel = ['--model', path.join(os.tmpdir(), 'no-such-hdlm-model-dir')];
  const file = () => {
    const f = path.join(tmp, 'a-file');
    fs.writeFileSync(f, 'x');
    return f;
  };
  const unwritable = () => {
    const d = path.join(tmp, 'read-only');
    fs.mkdirSync(d, { recursive: true });
    fs.chmodSync(d, 0o500);
    return path.join(d, 'out.json');
  };
  const cases = [
    ['an existing folder', () => tmp, /it is a folder/],
    ['a path under a regular file', () => path.join(file(), 'sub', 'out.json'), /is not a folder/],
    ...(isRoot ? [] : [['a folder without write permission', unwritable, /nothing can be created/]]),
  ];
  for (const [label, make, re] of cases) {
    it(`ppl --output: ${label}`, async () => {
      const target = make();
      const r = await cli(['eval', 'ppl', '--dataset', data, ...missingModel, '--output', target]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`writable file path for --output .*${re.source}`));
      assert.doesNotMatch(r.stderr, /no-such-hdlm-model/);
    });
  }
  if (isRoot) it.skip('ppl --output: a folder without write permission (running as root: permissions do not stop root)');

  it('generation --output-dir: a regular file, or a path under one', async () => {
    for (const target of [file(), path.join(file(), 'deeper')]) {
      const r = await cli(['eval', 'generation', ...missingModel, '--gpt2', 'none', '--output-dir', target]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /writable folder path for --output-dir/);
      assert.doesNotMatch(r.stderr, /no-such-hdlm-model/);
    }
  });

  it('a writable new nested path: the result is written there, nothing else left behind', async () => {
    const out = path.join(tmp, 'new', 'nested', 'ppl.json');
    const r = await cli(['eval', 'ppl', '--dataset', data, '--end', '1', '--batch-size', '2', '--mc-timesteps', '2', '--seed', '1', '--output', out]);
    assert.equal(r.code, 0, r.stderr);
    const saved = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(saved.chunks, 1);
    assert.deepEqual(fs.readdirSync(path.dirname(out)), ['ppl.json']);
    assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.startsWith('.hdlm-probe')), []);
  });
});
