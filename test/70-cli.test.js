'use strict';
// The `hdlm` command (dist/cli/main.js), run as a child process: exit codes, output formats, and the
// generate / export / info / download commands on the demo model and a mock hub.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startMockHub } = require('./helpers/mock-hub');

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const DEMO_MODEL = path.join(ROOT, 'models', 'brown-epsilon');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const VERSION = require('../package.json').version;

// Small, fast generations: the prompt "The future" is GPT-2 ids [464, 2003].
const GEN = ['generate', 'The future', '--steps', '8', '--context-length', '32', '--seed', '1'];

/** stdout of the plain GEN run, compared against other ways of getting the same sample */
let plainOutput = null;

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-cli-'));
const tsCache = path.join(tmpRoot, 'torchscript-cache');
const hubCache = path.join(tmpRoot, 'hub');

/** The environment of every run: private caches, no hub settings from the outside. */
function baseEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(HF_|HUGGING_FACE_|HUGGINGFACE_|HDLM_)/.test(k)) delete env[k];
  }
  return { ...env, HDLM_CACHE: tsCache, HF_HUB_CACHE: hubCache, HF_HOME: path.join(tmpRoot, 'hf-home'), HDLM_NUM_THREADS: '2', ...extra };
}

/**
 * Runs `node dist/cli/main.js ...args` without blocking this process (the mock hub answers from
 * here). Resolves to { code, signal, stdout, stderr }. `onSpawn(child)` may signal it.
 */
function cli(args, { env = {}, input, timeout = 60000, onSpawn } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: baseEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hdlm ${args.join(' ')} did not finish in ${timeout} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeout);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(input ?? '');
    if (onSpawn) onSpawn(child);
  });
}

function expectExit(r, code) {
  assert.equal(r.code, code, `exit ${r.code} (signal ${r.signal}), expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

function noStack(stderr) {
  assert.doesNotMatch(stderr, /^\s+at /m, `a stack trace was printed:\n${stderr}`);
}

describe('cli: hdlm', function () {
  this.timeout(60000);

  after(() => {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  });

  describe('usage', () => {
    it('--help, <command> --help and help <command> exit 0 and describe the commands', async () => {
      const r = await cli(['--help']);
      expectExit(r, 0);
      for (const word of ['generate', 'export', 'download', 'info', '--version']) assert.match(r.stdout, new RegExp(word));
      const g = await cli(['generate', '--help']);
      expectExit(g, 0);
      for (const flag of ['--model', '--alg', '--sampler', '--steps', '--json', '--show-steps', '--seed']) assert.ok(g.stdout.includes(flag), flag);
      const h = await cli(['help', 'download']);
      expectExit(h, 0);
      assert.match(h.stdout, /hdlm download <repo-id>/);
    });

    it('serve: listed in --help; its --help and a bad flag answer without starting a server', async () => {
      const r = await cli(['--help']);
      assert.match(r.stdout, /^\s+serve\s/m);
      const h = await cli(['serve', '--help']);
      expectExit(h, 0);
      for (const flag of ['--port', '--host', '--api-key', '--device']) assert.ok(h.stdout.includes(flag), flag);
      const bad = await cli(['serve', '--port', 'eighty']);
      expectExit(bad, 2);
      assert.match(bad.stderr, /--port/);
      noStack(bad.stderr);
    });

    it('--version prints the package version', async () => {
      const r = await cli(['--version']);
      expectExit(r, 0);
      assert.equal(r.stdout.trim(), VERSION);
    });

    it('no command, an unknown command or an unknown flag: exit 2 with a hint to --help', async () => {
      const none = await cli([]);
      expectExit(none, 2);
      assert.match(none.stderr, /Usage: hdlm <command>/);

      const unknown = await cli(['generat']);
      expectExit(unknown, 2);
      assert.match(unknown.stderr, /unknown command 'generat' \(did you mean 'generate'\?\)/);
      assert.match(unknown.stderr, /hdlm --help/);

      const flag = await cli(['generate', '--stpes', '4']);
      expectExit(flag, 2);
      assert.match(flag.stderr, /unknown option '--stpes'.*did you mean '--steps'/);
      assert.match(flag.stderr, /hdlm generate --help/);

      const extra = await cli(['generate', 'two', 'words']);
      expectExit(extra, 2);
      assert.match(extra.stderr, /unexpected argument "words"/);
    });

    it('bad flag values: exit 2 naming the flag, before any model is loaded', async () => {
      for (const [args, pattern] of [
        [['--steps', '0'], /--steps but received 0/],
        [['--steps', 'many'], /--steps but received "many"/],
        [['--steps'], /option '--steps' needs a value/],
        [['--temperature', '-1'], /--temperature/],
        [['--alg', 'fast'], /one of 'original', 'acs'.* for --alg but received "fast"/],
        [['--sampler', 'half'], /--sampler but received "half"/],
        [['--block-size', '8'], /--block-size applies only to --sampler semi/],
        [['--seed', '-3'], /--seed/],
        [['--json=yes'], /'--json' does not take a value/],
      ]) {
        const r = await cli(['generate', 'x', ...args]);
        expectExit(r, 2);
        assert.match(r.stderr, /^hdlm: /);
        assert.match(r.stderr, pattern);
        assert.equal(r.stdout, '');
        noStack(r.stderr);
      }
    });
  });

  describe('generate (demo model)', () => {
    let plain;

    it('prints a sample that starts with the prompt; silent on stderr when it is not a terminal', async () => {
      plain = await cli(GEN);
      expectExit(plain, 0);
      assert.ok(plain.stdout.startsWith('The future'), plain.stdout);
      assert.ok(plain.stdout.endsWith('\n'));
      assert.ok(plain.stdout.trim().length > 'The future'.length + 10, plain.stdout);
      assert.equal(plain.stderr, '');
      plainOutput = plain.stdout;
    });

    it('the same seed gives the same text', async () => {
      const again = await cli(GEN);
      expectExit(again, 0);
      assert.equal(again.stdout, plain.stdout);
    });

    it('--json prints one object with the ids, the text and the settings', async () => {
      const r = await cli([...GEN, '--json']);
      expectExit(r, 0);
      const out = JSON.parse(r.stdout);
      assert.equal(out.samples.length, 1);
      const { ids, text } = out.samples[0];
      assert.equal(ids.length, 32);
      assert.deepEqual(ids.slice(0, 2), [464, 2003]);
      assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 50258));
      assert.equal(text + '\n', plain.stdout, 'same seed and settings as the plain run');
      assert.equal(out.seed, 1);
      assert.equal(out.steps, 8);
      assert.equal(out.contextLength, 32);
      assert.equal(out.alg, 'acs');
      assert.equal(out.sampler, 'full');
      assert.equal(out.device, 'cpu');
      assert.equal(out.model, DEMO_MODEL);
      assert.ok(typeof out.ms === 'number' && out.ms >= 0);
    });

    it("semi sampler, a batch, and the prompt from stdin with '-'", async () => {
      const r = await cli(['generate', '-', '--sampler', 'semi', '--block-size', '8', '--steps', '2', '--context-length', '16', '--batch', '2', '--seed', '5'], {
        input: 'The future\n',
      });
      expectExit(r, 0);
      const samples = r.stdout.split('\n---\n');
      assert.equal(samples.length, 2, r.stdout);
      for (const s of samples) assert.ok(s.startsWith('The future'), s);
    });

    it('--suffix keeps the suffix at the end; --template fills its gaps and keeps the rest', async () => {
      const suffix = ' in the spring of 1961.';
      const r = await cli(['generate', 'The city', '--suffix', suffix, '--steps', '4', '--context-length', '24', '--seed', '2', '--json']);
      expectExit(r, 0);
      const { ids, text } = JSON.parse(r.stdout).samples[0];
      assert.equal(ids.length, 24);
      assert.ok(text.startsWith('The city') && text.endsWith(suffix), text);
      const t = await cli(['generate', '--template', 'He said{{3}} and then{{4}}.', '--steps', '4', '--seed', '2', '--json']);
      expectExit(t, 0);
      const out = JSON.parse(t.stdout);
      assert.ok(out.samples[0].text.startsWith('He said') && out.samples[0].text.endsWith('.'), out.samples[0].text);
      assert.ok(out.samples[0].text.includes(' and then'));
    });

    it('--suffix / --template refuse what they cannot go with', async () => {
      const shifted = await cli(['generate', 'x', '--suffix', 'y', '--sampler', 'full-shifted']);
      expectExit(shifted, 2);
      assert.match(shifted.stderr, /--suffix applies only to --sampler full or semi/);
      const both = await cli(['generate', '--template', 'a{{2}}', '--suffix', 'y']);
      expectExit(both, 2);
      const prompt = await cli(['generate', 'x', '--template', 'a{{2}}']);
      expectExit(prompt, 2);
      const nogap = await cli(['generate', '--template', 'no gaps', '--steps', '2']);
      assert.notEqual(nogap.code, 0);
      assert.match(nogap.stderr, /at least one \{\{N\}\} gap/);
    });

    it('the shifted samplers: full-shifted and semi-shifted (the model\'s metaschedule) keep the prompt', async () => {
      const full = await cli(['generate', 'The future', '--sampler', 'full-shifted', '--steps', '4', '--context-length', '16', '--seed', '3', '--json']);
      expectExit(full, 0);
      const f = JSON.parse(full.stdout);
      assert.equal(f.sampler, 'full-shifted');
      assert.deepEqual(f.samples[0].ids.slice(0, 2), [464, 2003]);
      assert.equal(f.samples[0].ids.length, 16);
      // a small synthetic checkpoint whose metaschedule is block annealing, width 16, eval_tau 16 → 16 steps
      const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-cli-shifted-'));
      let s;
      try {
        makeEpsilonCheckpoint(dir, { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16 });
        const semi = await cli(['generate', 'The future', '--model', dir, '--no-cache', '--sampler', 'semi-shifted', '--context-length', '4', '--seed', '3', '--json']);
        expectExit(semi, 0);
        s = JSON.parse(semi.stdout);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      assert.equal(s.steps, 16);
      assert.deepEqual(s.samples[0].ids.slice(0, 2), [464, 2003]);
      assert.equal(s.samples[0].ids.length, 4);
    });

    it('sampler and model family must match; gamma samplers take no prompt and no --steps', async () => {
      const eps = await cli(['generate', '--sampler', 'nar', '--context-length', '8']);
      expectExit(eps, 2);
      assert.match(eps.stderr, /for --sampler with this epsilon_hybrid model but received "nar"/);
      const gammaDir = path.join(FIXTURES, 'tiny-gamma');
      const prompt = await cli(['generate', 'hello', '--model', gammaDir]);
      expectExit(prompt, 2);
      assert.match(prompt.stderr, /no prompt for --sampler nar\/sar/);
      const full = await cli(['generate', '--model', gammaDir, '--sampler', 'full']);
      expectExit(full, 2);
      assert.match(full.stderr, /'nar' or 'sar' .* with this gamma_hybrid model but received "full"/);
      const steps = await cli(['generate', '--sampler', 'sar', '--steps', '3']);
      expectExit(steps, 2);
      assert.match(steps.stderr, /--steps does not apply to --sampler sar/);
      noStack(steps.stderr);
    });

    it('a value only the model can reject (context length above its 256) exits 2 naming the flag', async () => {
      const r = await cli(['generate', 'x', '--steps', '2', '--context-length', '999']);
      expectExit(r, 2);
      assert.match(r.stderr, /between 1 and 256 for --context-length but received 999/);
      noStack(r.stderr);
    });

    it('a missing model directory exits 1 with a clear message and no stack', async () => {
      const missing = path.join(tmpRoot, 'no-such-model');
      const r = await cli(['generate', 'x', '--model', missing]);
      expectExit(r, 1);
      assert.equal(r.stdout, '');
      assert.ok(r.stderr.startsWith(`hdlm: ${missing} does not exist`), r.stderr);
      noStack(r.stderr);

      const empty = fs.mkdtempSync(path.join(tmpRoot, 'empty-'));
      const e = await cli(['generate', 'x', '--model', empty]);
      expectExit(e, 1);
      assert.match(e.stderr, /holds no model/);

      const debug = await cli(['generate', 'x', '--model', missing], { env: { HDLM_DEBUG: '1' } });
      expectExit(debug, 1);
      assert.match(debug.stderr, /^\s+at /m, 'HDLM_DEBUG=1 prints the stack');
    });

    it('SIGINT stops a long run with exit code 130', async () => {
      let sent = false;
      const r = await cli(['generate', 'x', '--steps', '100000', '--context-length', '32'], {
        onSpawn: (child) =>
          setTimeout(() => {
            sent = true;
            child.kill('SIGINT');
          }, 2500),
      });
      assert.ok(sent);
      expectExit(r, 130);
      assert.match(r.stderr, /interrupted/);
      assert.equal(r.stdout, '');
    });
  });

  describe('export', () => {
    it('writes a TorchScript file that generate --model loads', async () => {
      const out = path.join(tmpRoot, 'exported', 'demo.pt');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const r = await cli(['export', DEMO_MODEL, out]);
      expectExit(r, 0);
      assert.equal(r.stdout.trim(), out);
      assert.ok(fs.statSync(out).size > 1000);

      const g = await cli([...GEN.slice(0, 2), '--model', out, ...GEN.slice(2)]);
      expectExit(g, 0);
      assert.ok(g.stdout.startsWith('The future'), g.stdout);
      if (plainOutput !== null) assert.equal(g.stdout, plainOutput, 'the exported module samples what the checkpoint samples');
    });

    it('missing arguments are a usage error', async () => {
      const r = await cli(['export', DEMO_MODEL]);
      expectExit(r, 2);
      assert.match(r.stderr, /expected <model> and <out\.pt>/);
    });
  });

  describe('info', () => {
    it('--json reports libtorch, devices and the caches', async () => {
      const r = await cli(['info', '--json']);
      expectExit(r, 0);
      const info = JSON.parse(r.stdout);
      assert.equal(typeof info.libtorchVersion, 'string');
      assert.match(info.libtorchVersion, /^\d+\.\d+/);
      assert.equal(typeof info.cudaCompiled, 'boolean');
      assert.ok(Number.isInteger(info.cudaDeviceCount));
      assert.equal(info.threads, 2, 'HDLM_NUM_THREADS');
      assert.equal(info.version, VERSION);
      assert.equal(info.hubCacheDir, hubCache);
      assert.equal(info.torchscriptCacheDir, tsCache);
      assert.ok(Array.isArray(info.cachedModels));
      // the libtorch library this process loaded, and the addon binary (a checkout builds from source)
      assert.ok(info.libtorch && fs.existsSync(info.libtorch.file), JSON.stringify(info.libtorch));
      assert.match(path.basename(info.libtorch.file), /^libtorch_cpu\.so/);
      assert.equal(info.libtorch.version.split('.').slice(0, 2).join('.'), info.libtorchVersion.split('.').slice(0, 2).join('.'));
      assert.equal(info.libtorch.cuda, info.cudaCompiled);
      assert.equal(info.binary.kind, 'source');
      assert.equal(info.binary.path, path.join(__dirname, '..', 'build', 'Release', 'hdlm.node'));
    });

    it('prints a readable summary', async () => {
      const r = await cli(['info']);
      expectExit(r, 0);
      assert.match(r.stdout, /libtorch\s+\d+\.\d+\.\d+ \(\/\S*libtorch_cpu\.so[^,]*, (CPU|CUDA)/);
      assert.match(r.stdout, /addon\s+built from source \(/);
      assert.ok(r.stdout.includes(hubCache));
    });
  });

  describe('progress bar (lib/progress)', () => {
    const { createProgress } = require('../dist/cli/progress');
    const sink = (isTTY) => {
      const s = { isTTY, columns: 60, text: '', write: (c) => (s.text += c) };
      return s;
    };

    it('draws nothing when the stream is not a terminal', () => {
      const s = sink(false);
      const p = createProgress(s, 'denoising', 8, { unit: 'step' });
      p.update(3);
      p.done(true);
      assert.equal(s.text, '');
      assert.equal(p.active, false);
    });

    it('on a terminal: one redrawn line with count, time and ms/step, cleared by done()', () => {
      const s = sink(true);
      const p = createProgress(s, 'denoising', 8, { unit: 'step', throttleMs: 0 });
      p.update(4);
      const ERASE_LINE = '\x1b[K';
      assert.ok(s.text.endsWith(ERASE_LINE), JSON.stringify(s.text));
      assert.match(s.text.slice(0, -ERASE_LINE.length), /^\rdenoising\s+50% .* 4\/8 {2}\d+\.\ds {2}[\d.]+ ms\/step$/);
      for (const line of s.text.split('\r')) assert.ok(Array.from(line.replace('\x1b[K', '')).length < 60, line);
      p.update(8);
      p.done();
      assert.ok(s.text.endsWith('\r\x1b[K'), JSON.stringify(s.text));
      const before = s.text;
      p.update(9);
      assert.equal(s.text, before, 'nothing after done()');
    });

    it('byte counts with an unknown total', () => {
      const s = sink(true);
      const p = createProgress(s, 'model.safetensors', null, { unit: 'byte' });
      p.update(2_500_000);
      assert.match(s.text, /model\.safetensors 2\.5 MB/);
      p.done(true);
      assert.ok(s.text.endsWith('\n'));
    });
  });

  describe('download (mock hub)', () => {
    const REPO = 'cli-org/tiny-model';
    const CONFIG = JSON.stringify({ model_type: 'epsilon_hybrid', model: { hidden_size: 8 } });
    const WEIGHTS = Buffer.from('not really a safetensors file, and download does not care');
    let hub;
    let snapshot;

    before(async () => {
      hub = await startMockHub({ repos: { [REPO]: { files: { 'config.json': CONFIG, 'model.safetensors': WEIGHTS, 'README.md': '# tiny' } } } });
    });
    after(async () => {
      await hub?.close();
    });

    it('fetches config and weights into the HF cache and prints the snapshot folder', async () => {
      const r = await cli(['download', REPO], { env: { HF_ENDPOINT: hub.url } });
      expectExit(r, 0);
      snapshot = r.stdout.trim();
      assert.equal(snapshot, path.join(hubCache, 'models--cli-org--tiny-model', 'snapshots', hub.commitOf(REPO)));
      assert.equal(fs.readFileSync(path.join(snapshot, 'config.json'), 'utf8'), CONFIG);
      assert.deepEqual(fs.readFileSync(path.join(snapshot, 'model.safetensors')), WEIGHTS);
      assert.ok(!fs.existsSync(path.join(snapshot, 'README.md')), 'only the model files');
      assert.equal(r.stderr, '');
    });

    it('a second download reads the cache; --json lists the files', async () => {
      const before = hub.requests.filter((q) => q.method === 'GET' && (q.path.includes('/resolve/') || q.path.startsWith('/cdn/'))).length;
      const r = await cli(['download', REPO, '--json'], { env: { HF_ENDPOINT: hub.url } });
      expectExit(r, 0);
      const out = JSON.parse(r.stdout);
      assert.equal(out.snapshotDir, snapshot);
      assert.equal(out.commit, hub.commitOf(REPO));
      assert.deepEqual(Object.keys(out.files).sort(), ['config.json', 'model.safetensors']);
      const after = hub.requests.filter((q) => q.method === 'GET' && (q.path.includes('/resolve/') || q.path.startsWith('/cdn/'))).length;
      assert.equal(after, before, 'no file content downloaded again');

      const info = JSON.parse((await cli(['info', '--json'])).stdout);
      const cached = info.cachedModels.find((m) => m.repoId === REPO);
      assert.ok(cached, JSON.stringify(info.cachedModels));
      assert.equal(cached.sizeBytes, CONFIG.length + WEIGHTS.length);
    });

    it('an unknown repo exits 1 with the hub message', async () => {
      const r = await cli(['download', 'cli-org/missing'], { env: { HF_ENDPOINT: hub.url } });
      expectExit(r, 1);
      assert.match(r.stderr, /^hdlm: .*cli-org\/missing/);
      noStack(r.stderr);
    });

    it('works offline (HF_HUB_OFFLINE=1) from the cache once the hub is gone', async () => {
      await hub.close();
      const r = await cli(['download', REPO], { env: { HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: '1' } });
      expectExit(r, 0);
      assert.equal(r.stdout.trim(), snapshot);

      const other = await cli(['download', 'cli-org/never-downloaded'], { env: { HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: '1' } });
      expectExit(other, 1);
      assert.match(other.stderr, /[Oo]ffline/);
    });
  });
});
