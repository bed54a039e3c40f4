'use strict';
// Evaluation datasets from the Hugging Face Hub. The Parquet reader (lib/eval/parquet.ts, on
// hyparquet) against our test writer (every page / encoding / compression combination it
// supports) and against files written by real software (test/fixtures/parquet: arrow-rs via
// parquet-wasm, @dsnp/parquetjs), hostile and truncated files; the dataset download through a
// mock Hub on 127.0.0.1 (URL shapes, cache layout, offline, interrupted downloads); upstream's
// detokenisers and chunking on that data; and `hdlm eval ppl --dataset ...` against the mock Hub.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { execFile } = require('child_process');
const { promisify } = require('util');
const { smartModelLoader, HdlmError } = require('../dist');
const { loadHubDataset, readParquetStringColumn, parquetMetadata } = require('../dist/eval');
const pq = require('../dist/eval/parquet');
const ev = require('../dist/eval');
const ds = require('../dist/eval/datasets');
const { writeParquet, snappyLiteral } = require('./helpers/parquet-writer');
const { rows } = require('./fixtures/parquet/make-fixtures');
const { startMockHub } = require('./helpers/mock-hub');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { ROOT, tempDir } = require('./helpers/reference');

const FIX = path.join(ROOT, 'test', 'fixtures', 'parquet');
const EXPECTED = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

function isCode(code, pattern) {
  return (e) => {
    assert.ok(e instanceof HdlmError, `expected an HdlmError, got ${e && e.stack}`);
    assert.strictEqual(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

function lcg(seed) {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
}

/** Strings with nulls, empties, repeats, unicode and long values. */
function sampleStrings(n, seed) {
  const r = lcg(seed);
  const words = ['alpha', 'beta', 'γάμμα', '東京', '🙂', 'delta', ''];
  return Array.from({ length: n }, (_, i) => {
    const k = r();
    if (k < 0.1) return null;
    if (k < 0.4) return words[i % words.length];
    return Array.from({ length: 1 + Math.floor(r() * 40) }, () => words[Math.floor(r() * words.length)]).join(' ');
  });
}

describe('parquet: our test writer, every supported combination', () => {
  const values = sampleStrings(203, 7);
  for (const pageVersion of [1, 2]) {
    for (const codec of ['none', 'snappy', 'gzip']) {
      for (const dictionary of [false, true]) {
        it(`data page v${pageVersion}, ${codec}, ${dictionary ? 'dictionary' : 'PLAIN'}: optional column with nulls, many pages and row groups`, async () => {
          const buf = writeParquet({
            columns: [
              { name: 'id', type: 'int64', values: values.map((_, i) => i) },
              { name: 'other', values: values.map((v) => (v === null ? 'x' : v.toUpperCase())) },
              { name: 'text', values, optional: true, dictionary },
            ],
            rowGroupSize: 64, pageSize: 9, pageVersion, codec,
          });
          assert.deepStrictEqual(await readParquetStringColumn(buf, 'text'), values);
          assert.deepStrictEqual(await readParquetStringColumn(buf, 'other'), values.map((v) => (v === null ? 'x' : v.toUpperCase())));
          const meta = await parquetMetadata(buf);
          assert.strictEqual(meta.numRows, 203);
          assert.strictEqual(meta.rowGroups, 4);
          assert.deepStrictEqual(meta.columns.map((c) => [c.name, c.type, c.repetition]), [
            ['id', 'INT64', 'required'], ['other', 'BYTE_ARRAY', 'required'], ['text', 'BYTE_ARRAY', 'optional'],
          ]);
        });
      }
    }
  }

  it('empty files, all-null columns and required columns', async () => {
    assert.deepStrictEqual(await readParquetStringColumn(writeParquet({ columns: [{ name: 'text', values: [] }] }), 'text'), []);
    const nulls = [null, null, null];
    assert.deepStrictEqual(await readParquetStringColumn(writeParquet({ columns: [{ name: 'text', values: nulls, optional: true, dictionary: true }] }), 'text'), nulls);
    assert.deepStrictEqual(await readParquetStringColumn(writeParquet({ columns: [{ name: 'text', values: ['a', '', 'é'] }], codec: 'snappy' }), 'text'), ['a', '', 'é']);
  });
});

describe('parquet: files written by real software (test/fixtures/parquet)', () => {
  const read = (name) => pq.readParquetFileStrings(path.join(FIX, name), 'text');
  /** The codecs and encodings of a fixture's `text` column chunks, as its footer records them. */
  const chunkFormats = async (name) => {
    const { parquetMetadata: footer } = await import('hyparquet');
    const buf = fs.readFileSync(path.join(FIX, name));
    const meta = footer(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    const chunks = meta.row_groups.flatMap((g) => g.columns.filter((c) => c.meta_data.path_in_schema.join('.') === 'text'));
    return { codecs: new Set(chunks.map((c) => c.meta_data.codec)), encodings: new Set(chunks.flatMap((c) => c.meta_data.encodings)) };
  };

  it('expected.json is the column the writers were given (make-fixtures.js rows())', () => {
    assert.deepStrictEqual(EXPECTED, rows());
  });

  it('arrow-rs (parquet-wasm): snappy, v1 pages, dictionary falling back to PLAIN, 3 row groups', async () => {
    const buf = fs.readFileSync(path.join(FIX, 'arrow-rs-snappy-v1.parquet'));
    const meta = await parquetMetadata(buf);
    assert.match(meta.createdBy, /^parquet-rs/);
    assert.strictEqual(meta.rowGroups, 3);
    assert.strictEqual(meta.numRows, EXPECTED.length);
    assert.deepStrictEqual(meta.columns.map((c) => c.name), ['id', 'text']);
    assert.deepStrictEqual(await read('arrow-rs-snappy-v1.parquet'), EXPECTED);
  });

  it('arrow-rs (parquet-wasm): gzip, v2 pages, dictionary', async () => {
    assert.deepStrictEqual(await read('arrow-rs-gzip-v2.parquet'), EXPECTED);
  });

  it('@dsnp/parquetjs: snappy, PLAIN, v1 and v2 pages', async () => {
    assert.match((await parquetMetadata(fs.readFileSync(path.join(FIX, 'parquetjs-snappy-v1.parquet')))).createdBy, /parquetjs/);
    assert.deepStrictEqual(await read('parquetjs-snappy-v1.parquet'), EXPECTED);
    assert.deepStrictEqual(await read('parquetjs-snappy-v2.parquet'), EXPECTED);
  });

  it('ZSTD-compressed pages are read', async () => {
    assert.deepStrictEqual((await chunkFormats('arrow-rs-zstd-v1.parquet')).codecs, new Set(['ZSTD']));
    assert.deepStrictEqual(await read('arrow-rs-zstd-v1.parquet'), EXPECTED);
  });

  it('DELTA_BYTE_ARRAY pages (arrow-rs v2 dictionary fallback) are read', async () => {
    assert.ok((await chunkFormats('arrow-rs-delta-v2.parquet')).encodings.has('DELTA_BYTE_ARRAY'));
    assert.deepStrictEqual(await read('arrow-rs-delta-v2.parquet'), EXPECTED);
  });

  it('the wrong column: a missing one lists the columns, a non-string one says so', async () => {
    const file = path.join(FIX, 'arrow-rs-snappy-v1.parquet');
    await assert.rejects(pq.readParquetFileStrings(file, 'sentence'), isCode('HDLM_BAD_FILE', /no column 'sentence' \(columns: id, text\)/));
    await assert.rejects(pq.readParquetFileStrings(file, 'id'), isCode('HDLM_BAD_FILE', /INT64 values, not strings/));
  });
});

describe('parquet: hostile and truncated files', () => {
  const good = fs.readFileSync(path.join(FIX, 'arrow-rs-snappy-v1.parquet'));
  const ours = writeParquet({ columns: [{ name: 'text', values: sampleStrings(80, 3), optional: true, dictionary: true }], pageSize: 7, codec: 'snappy' });

  it('every truncation of a file is an HDLM_BAD_FILE error', async () => {
    for (const buf of [good, ours]) {
      for (let n = 0; n < buf.length; n += n < 64 ? 1 : 97) {
        await assert.rejects(readParquetStringColumn(buf.subarray(0, n), 'text'), isCode('HDLM_BAD_FILE'), `${n} bytes`);
      }
    }
    await assert.rejects(readParquetStringColumn(Buffer.from('not a parquet file at all'), 'text'), isCode('HDLM_BAD_FILE', /PAR1/));
  });

  it('corrupted bytes never crash: a result of the right length or an HdlmError', async () => {
    const r = lcg(99);
    for (const buf of [good, ours]) {
      const rows = (await parquetMetadata(buf)).numRows;
      for (let trial = 0; trial < 400; trial++) {
        const copy = Buffer.from(buf);
        const flips = 1 + Math.floor(r() * 4);
        for (let k = 0; k < flips; k++) copy[Math.floor(r() * copy.length)] ^= 1 << Math.floor(r() * 8);
        try {
          const out = await readParquetStringColumn(copy, 'text');
          assert.strictEqual(out.length, rows);
        } catch (e) {
          assert.ok(e instanceof HdlmError && ['HDLM_BAD_FILE', 'HDLM_UNSUPPORTED'].includes(e.code), `trial ${trial}: ${e && e.stack}`);
        }
      }
    }
  });

  it('invalid UTF-8 is an error, not replacement characters', async () => {
    const buf = writeParquet({ columns: [{ name: 'text', values: ['ok', 'XX'] }] });
    const i = buf.indexOf(Buffer.from('XX'));
    buf[i] = 0xff;
    await assert.rejects(readParquetStringColumn(buf, 'text'), isCode('HDLM_BAD_FILE', /UTF-8/));
  });

  it('snappy: a damaged compressed page (a copy from before the start, a literal past the end) is an HDLM_BAD_FILE error', async () => {
    const value = 'abcabcabcabcX';
    const good = writeParquet({ columns: [{ name: 'text', values: [value] }], codec: 'snappy' });
    assert.deepStrictEqual(await readParquetStringColumn(good, 'text'), [value]);
    // the one data page: PLAIN (4-byte length, then the bytes), as the writer's literal-only Snappy stream
    const stream = snappyLiteral(Buffer.concat([Buffer.from([value.length, 0, 0, 0]), Buffer.from(value)]));
    const at = good.indexOf(stream);
    assert.ok(at > 0, 'the compressed page is in the file');
    const n = stream[0]; // uncompressed length (one varint byte)
    for (const damaged of [
      [n, 0x01 | ((5 - 4) << 2), 9], // copy 5 bytes from offset 9 before anything was written
      [n, 59 << 2], // a 60-byte literal in a shorter stream
    ]) {
      const copy = Buffer.from(good);
      copy.set(damaged, at);
      await assert.rejects(readParquetStringColumn(copy, 'text'), isCode('HDLM_BAD_FILE'));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// the Hub

const PTB = [
  " the company 's shares rose N % to $ N a share ; it did n't <unk> ",
  ' pierre <unk> N years old will join the board as a nonexecutive director nov. N ',
  " mr. <unk> is chairman of <unk> n.v. the dutch publishing group 's unit ",
  ' a form of asbestos once used to make kent cigarette filters has caused a high percentage of cancer deaths ',
  " the asbestos fiber <unk> is unusually <unk> once it enters the <unk> with even brief exposures to it causing symptoms that show up decades later researchers said ",
];
const PTB_ROWS = Array.from({ length: 40 }, (_, i) => PTB[i % PTB.length]);
const MULTI_A = ['first file one', 'first file two'];
const MULTI_B = ['second file one', null, 'second file three'];
const MAIN_ROWS = PTB_ROWS.slice(0, 10).map((t) => t.toUpperCase());
// LAMBADA-style passages with curly quotes and surrounding spaces (the detokeniser's business)
const LAMBADA_ROWS = Array.from({ length: 12 }, (_, i) =>
  `  \u201cwhat do you mean?\u201d she asked, looking at passage ${i} . he smiled and said \u201cnothing\u201d and left the room  `);

function parquetOf(field, values, extra = {}) {
  return writeParquet({ columns: [{ name: field, values, optional: values.includes(null), dictionary: true }], codec: 'snappy', pageSize: 16, ...extra });
}

describe('Hub datasets (mock hub on 127.0.0.1)', function () {
  this.timeout(120000);
  let hub;
  let tmp;
  let savedOffline;
  const EXPORT = 'refs/convert/parquet';

  before(async () => {
    tmp = tempDir('hubdata');
    savedOffline = process.env.HF_HUB_OFFLINE;
    delete process.env.HF_HUB_OFFLINE;
    hub = await startMockHub({
      datasets: {
        'Salesforce/wikitext': {
          files: { 'README.md': '# wikitext' },
          branches: {
            [EXPORT]: {
              // a real-software file: arrow-rs, snappy, 3 row groups, nulls
              'wikitext-103-raw-v1/validation/0000.parquet': fs.readFileSync(path.join(FIX, 'arrow-rs-snappy-v1.parquet')),
              'wikitext-2-raw-v1/validation/0000.parquet': parquetOf('text', [' = Valkyria = \n', '', ' It met with positive sales in Japan , and was praised . \n']),
            },
          },
        },
        'ptb-text-only/ptb_text_only': {
          files: { 'ptb_text_only.py': '# a loading script' },
          branches: { [EXPORT]: { 'penn_treebank/validation/0000.parquet': parquetOf('sentence', PTB_ROWS, { pageVersion: 2 }) } },
        },
        'EleutherAI/lambada_openai': {
          files: { 'README.md': '# lambada' },
          branches: {
            [EXPORT]: {
              'default/test/0000.parquet': parquetOf('text', LAMBADA_ROWS),
              'en/test/0000.parquet': parquetOf('text', ['not this config']),
            },
          },
        },
        'test-org/multi': {
          files: { 'data/file.parquet': parquetOf('body', MAIN_ROWS) },
          branches: {
            [EXPORT]: {
              'default/validation/0001.parquet': parquetOf('text', MULTI_B),
              'default/validation/0000.parquet': parquetOf('text', MULTI_A),
              'default/validation/README.md': 'not parquet',
              'other/test/0000.parquet': parquetOf('text', ['other config']),
            },
          },
        },
        'test-org/private-ds': { private: true, files: {}, branches: { [EXPORT]: { 'default/test/0000.parquet': parquetOf('text', ['secret']) } } },
      },
    });
  });
  after(async () => {
    await hub?.close();
    if (savedOffline === undefined) delete process.env.HF_HUB_OFFLINE;
    else process.env.HF_HUB_OFFLINE = savedOffline;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const cacheOf = (name) => path.join(tmp, name);
  const opts = (cache, extra = {}) => ({ endpoint: hub.url, cacheDir: cacheOf(cache), token: '', ...extra });

  it('ptb: URL shapes of a dataset repo, the export branch, the Python cache layout', async () => {
    const since = hub.requests.length;
    const { texts, info } = await loadHubDataset('ptb', opts('c1'));
    assert.deepStrictEqual(texts, PTB_ROWS);
    const commit = hub.commitOf('datasets/ptb-text-only/ptb_text_only', EXPORT);
    assert.deepStrictEqual(
      { ...info, files: info.files },
      {
        dataset: 'ptb', repo: 'ptb-text-only/ptb_text_only', config: 'penn_treebank', split: 'validation', revision: EXPORT, commit,
        files: ['penn_treebank/validation/0000.parquet'], field: 'sentence', rows: PTB_ROWS.length, nullRows: 0, detokenizer: 'ptb',
      },
    );
    const paths = hub.requests.slice(since).map((r) => `${r.method} ${r.path}`);
    assert.ok(paths.includes('GET /api/datasets/ptb-text-only/ptb_text_only/revision/refs%2Fconvert%2Fparquet'), paths.join('\n'));
    assert.ok(paths.includes(`GET /api/datasets/ptb-text-only/ptb_text_only/tree/${commit}/penn_treebank/validation`), paths.join('\n'));
    assert.ok(paths.includes(`POST /api/datasets/ptb-text-only/ptb_text_only/paths-info/${commit}`), paths.join('\n'));
    assert.ok(paths.includes(`GET /datasets/ptb-text-only/ptb_text_only/resolve/${commit}/penn_treebank/validation/0000.parquet`), paths.join('\n'));
    // <cache>/datasets--owner--name/{refs/refs/convert/parquet, snapshots/<commit>/<file> -> ../../blobs/<sha256>}
    const repoDir = path.join(cacheOf('c1'), 'datasets--ptb-text-only--ptb_text_only');
    assert.strictEqual(fs.readFileSync(path.join(repoDir, 'refs', 'refs', 'convert', 'parquet'), 'utf8'), commit);
    const pointer = path.join(repoDir, 'snapshots', commit, 'penn_treebank', 'validation', '0000.parquet');
    assert.ok(fs.lstatSync(pointer).isSymbolicLink());
    assert.strictEqual(
      path.resolve(path.dirname(pointer), fs.readlinkSync(pointer)),
      path.join(repoDir, 'blobs', hub.blobEtag('datasets/ptb-text-only/ptb_text_only', 'penn_treebank/validation/0000.parquet', EXPORT)),
    );
    assert.ok(!fs.existsSync(path.join(cacheOf('c1'), 'models--ptb-text-only--ptb_text_only')));
  });

  it('a second run downloads nothing; offline (option or HF_HUB_OFFLINE) reads the cache alone', async () => {
    const contentGets = () => hub.requests.filter((r) => r.method === 'GET' && (r.path.includes('/resolve/') || r.path.startsWith('/cdn/'))).length;
    const before = contentGets();
    assert.deepStrictEqual((await loadHubDataset('ptb', opts('c1'))).texts, PTB_ROWS);
    assert.strictEqual(contentGets(), before);
    const n = hub.requests.length;
    assert.deepStrictEqual((await loadHubDataset('ptb', opts('c1', { endpoint: 'http://127.0.0.1:9', offline: true }))).texts, PTB_ROWS);
    process.env.HF_HUB_OFFLINE = '1';
    try {
      assert.deepStrictEqual((await loadHubDataset('ptb', { cacheDir: cacheOf('c1'), endpoint: 'http://127.0.0.1:9' })).texts, PTB_ROWS);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.strictEqual(hub.requests.length, n, 'offline runs make no request');
    // the Hub unreachable (connection refused): the cached snapshot is used, as for models
    assert.deepStrictEqual((await loadHubDataset('ptb', opts('c1', { endpoint: 'http://127.0.0.1:9' }))).texts, PTB_ROWS);
    await assert.rejects(loadHubDataset('wikitext2', opts('c1', { offline: true })), isCode('HDLM_HUB', /Offline mode is on.*Salesforce\/wikitext/));
  });

  it('wikitext103 / wikitext2: the export files of their configs, null rows skipped, empty rows kept', async () => {
    const w103 = await loadHubDataset('wikitext103', opts('c2'));
    assert.deepStrictEqual(w103.texts, EXPECTED.filter((t) => t !== null));
    assert.strictEqual(w103.info.nullRows, EXPECTED.filter((t) => t === null).length);
    assert.strictEqual(w103.info.detokenizer, 'wikitext');
    assert.deepStrictEqual(w103.info.files, ['wikitext-103-raw-v1/validation/0000.parquet']);
    const w2 = await loadHubDataset('wikitext2', opts('c2'));
    assert.deepStrictEqual(w2.texts, [' = Valkyria = \n', '', ' It met with positive sales in Japan , and was praised . \n']);
  });

  it('hf:<repo>[:<config>]:<split> reads every Parquet file of the split in name order; hf:<repo>/<file> one file', async () => {
    const a = await loadHubDataset('hf:test-org/multi:validation', opts('c3'));
    assert.deepStrictEqual(a.texts, [...MULTI_A, 'second file one', 'second file three']);
    assert.deepStrictEqual(a.info.files, ['default/validation/0000.parquet', 'default/validation/0001.parquet']);
    assert.strictEqual(a.info.nullRows, 1);
    assert.strictEqual(a.info.detokenizer, 'none');
    assert.deepStrictEqual((await loadHubDataset('hf:test-org/multi:other:test', opts('c3'))).texts, ['other config']);
    const f = await loadHubDataset('hf:test-org/multi/data/file.parquet', opts('c3', { field: 'body' }));
    assert.deepStrictEqual(f.texts, MAIN_ROWS);
    assert.strictEqual(f.info.revision, 'main');
    assert.strictEqual(f.info.commit, hub.commitOf('datasets/test-org/multi'));
    await assert.rejects(loadHubDataset('hf:test-org/multi/data/file.parquet', opts('c3')), isCode('HDLM_BAD_FILE', /no column 'text' \(columns: body\)/));
    await assert.rejects(loadHubDataset('hf:test-org/multi:nope', opts('c3')), isCode('HDLM_HUB', /no folder "default\/nope".*partial-nope/));
    await assert.rejects(loadHubDataset('hf:test-org/missing:test', opts('c3')), isCode('HDLM_HUB', /test-org\/missing/));
    for (const bad of ['hf:', 'hf:noslash:test', 'hf:a/b:c:d:e', 'hf:a/b/../x.parquet', 'hf:a/b/file.csv', 'hf:a/b::test', 'nope']) {
      await assert.rejects(loadHubDataset(bad, opts('c3')), isCode('HDLM_INVALID_ARGUMENT', /for dataset but received/), bad);
    }
    await assert.rejects(loadHubDataset('ptb', opts('c3', { field: '' })), isCode('HDLM_INVALID_ARGUMENT', /for field/));
    await assert.rejects(loadHubDataset('ptb', opts('c3', { revision: '' })), isCode('HDLM_INVALID_ARGUMENT', /for revision/));
  });

  it('private datasets need a token (never echoed)', async () => {
    await assert.rejects(loadHubDataset('hf:test-org/private-ds:test', opts('c4')), isCode('HDLM_HUB', /private or gated/));
    await assert.rejects(loadHubDataset('hf:test-org/private-ds:test', opts('c4', { token: 'bad-token-77' })), (e) => isCode('HDLM_HUB')(e) && !e.message.includes('bad-token-77'));
    assert.deepStrictEqual((await loadHubDataset('hf:test-org/private-ds:test', opts('c4', { token: 'good-token' }))).texts, ['secret']);
  });

  it('a download broken mid-file leaves no partial file; the retry completes it', async () => {
    hub.interruptNext('datasets/test-org/multi', 'default/validation/0001.parquet', 1, EXPORT);
    await assert.rejects(loadHubDataset('hf:test-org/multi:validation', opts('c5')), isCode('HDLM_HUB', /interrupted/));
    const repoDir = path.join(cacheOf('c5'), 'datasets--test-org--multi');
    const blobs = fs.readdirSync(path.join(repoDir, 'blobs'));
    assert.deepStrictEqual(blobs.filter((b) => b.endsWith('.incomplete')), []);
    assert.ok(!blobs.includes(hub.blobEtag('datasets/test-org/multi', 'default/validation/0001.parquet', EXPORT)));
    const commit = hub.commitOf('datasets/test-org/multi', EXPORT);
    assert.ok(!fs.existsSync(path.join(repoDir, 'snapshots', commit, 'default', 'validation', '0001.parquet')));
    const a = await loadHubDataset('hf:test-org/multi:validation', opts('c5'));
    assert.strictEqual(a.texts.length, 4);
  });

  describe('evaluatePerplexity and hdlm eval ppl on Hub datasets', () => {
    let model;
    let ckDir;
    const L = 32;
    before(async () => {
      ckDir = makeEpsilonCheckpoint(path.join(tmp, 'tiny'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: L }).dir;
      ({ model } = await smartModelLoader(ckDir, { device: 'cpu', useCache: false }));
    });
    after(() => model?.dispose());

    const common = { batchSize: 2, monteCarloTimesteps: 4, seed: 5 };

    it('ptb: upstream\'s detokeniser by default, the same chunks as chunkTexts; an explicit detokenizer wins', async () => {
      const viaHub = await ev.evaluatePerplexity({ model, dataset: 'ptb', ...opts('c6'), ...common });
      const direct = await ev.evaluatePerplexity({ model, texts: PTB_ROWS, detokenizer: 'ptb', ...common });
      const expectedChunks = ds.chunkTexts(PTB_ROWS, L, ds.ptbDetokenizer);
      assert.strictEqual(viaHub.chunks, expectedChunks.length);
      assert.strictEqual(viaHub.nll, direct.nll);
      assert.strictEqual(viaHub.dataset.detokenizer, 'ptb');
      assert.strictEqual(viaHub.dataset.repo, 'ptb-text-only/ptb_text_only');
      // the detokeniser changes the text ("did n't" -> "didn't", "<unk>" -> "?"): another token stream
      assert.notDeepStrictEqual(ds.chunkTexts(PTB_ROWS, L), expectedChunks);
      const raw = await ev.evaluatePerplexity({ model, dataset: 'ptb', detokenizer: 'none', ...opts('c6'), ...common });
      const rawDirect = await ev.evaluatePerplexity({ model, texts: PTB_ROWS, ...common });
      assert.strictEqual(raw.chunks, ds.chunkTexts(PTB_ROWS, L).length);
      assert.strictEqual(raw.nll, rawDirect.nll);
      assert.strictEqual(raw.dataset.detokenizer, 'none');
    });

    it('lambada: EleutherAI/lambada_openai (default config, test split, text column) with upstream\'s LAMBADA detokeniser', async () => {
      const { texts, info } = await loadHubDataset('lambada', opts('c7'));
      assert.deepStrictEqual(texts, LAMBADA_ROWS);
      assert.strictEqual(info.repo, 'EleutherAI/lambada_openai');
      assert.deepStrictEqual(info.files, ['default/test/0000.parquet']);
      assert.strictEqual(info.detokenizer, 'lambada');
      // upstream's lambada_detokenizer: curly double quotes straightened, then "\n" + text.strip()
      const detok = ds.detokenizer('lambada');
      assert.strictEqual(detok(LAMBADA_ROWS[0]), '\n"what do you mean?" she asked, looking at passage 0 . he smiled and said "nothing" and left the room');
      const viaHub = await ev.evaluatePerplexity({ model, dataset: 'lambada', ...opts('c7'), ...common });
      assert.strictEqual(viaHub.dataset.detokenizer, 'lambada');
      assert.strictEqual(viaHub.chunks, ds.chunkTexts(LAMBADA_ROWS, L, ds.lambadaDetokenizer).length);
      const direct = await ev.evaluatePerplexity({ model, texts: LAMBADA_ROWS, detokenizer: 'lambada', ...common });
      assert.strictEqual(viaHub.nll, direct.nll);
    });

    it('wikitext103: every row (empty ones too) gets its EOS, as upstream; chunk window options apply', async () => {
      const rows = EXPECTED.filter((t) => t !== null);
      const r = await ev.evaluatePerplexity({ model, dataset: 'wikitext103', ...opts('c6'), ...common, start: 2, end: 5 });
      assert.strictEqual(r.chunks, 3);
      const all = ds.chunkTexts(rows, L, ds.wikitextDetokenizer);
      const direct = await ev.evaluatePerplexity({ model, chunks: all.slice(2, 5), ...common });
      // chunk i is seeded by its index in the evaluated list, so both runs see the same draws
      assert.strictEqual(r.nll, direct.nll);
    });

    it('validates: one source, Hub options by name; perplexityChunks refuses Hub datasets (they are async)', async () => {
      await assert.rejects(ev.evaluatePerplexity({ model, dataset: 'ptb', texts: ['x'], ...opts('c6') }), /exactly one/);
      await assert.rejects(ev.evaluatePerplexity({ model, dataset: 'ptb', ...opts('c6'), offline: 'yes' }), isCode('HDLM_INVALID_ARGUMENT', /for offline/));
      await assert.rejects(ev.evaluatePerplexity({ model, dataset: 'hf:bad', ...opts('c6') }), isCode('HDLM_INVALID_ARGUMENT', /for dataset/));
      await assert.rejects(ev.evaluatePerplexity({ model, dataset: 'ptb', ...opts('c6'), datasetRevision: 'a b' }), isCode('HDLM_INVALID_ARGUMENT', /for datasetRevision/));
      await assert.rejects(loadHubDataset('ptb', { ...opts('c6'), bogus: 1 }), isCode('HDLM_INVALID_ARGUMENT', /Unknown option bogus/));
      assert.throws(() => ev.perplexityChunks({ dataset: 'ptb' }, L), isCode('HDLM_INVALID_ARGUMENT', /evaluatePerplexity/));
    });

    it('hdlm eval ppl --dataset ptb | hf:... against the mock hub (HF_ENDPOINT, HF_HUB_CACHE), then --offline', async () => {
      const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheOf('cli'), HDLM_CACHE: path.join(tmp, 'ts'), HF_TOKEN: '' };
      delete env.HF_HUB_OFFLINE;
      const run = (args) => promisify(execFile)(process.execPath, [CLI, 'eval', 'ppl', '-m', ckDir, '--batch-size', '2', '--mc-timesteps', '2', '--seed', '1', ...args], { env, encoding: 'utf8' });
      const { stdout } = await run(['--dataset', 'ptb', '--end', '2']);
      const out = JSON.parse(stdout);
      assert.strictEqual(out.dataset, 'ptb');
      assert.strictEqual(out.detokenizer, 'ptb');
      assert.strictEqual(out.chunks, 2);
      assert.strictEqual(out.source.commit, hub.commitOf('datasets/ptb-text-only/ptb_text_only', EXPORT));
      assert.ok(fs.existsSync(path.join(cacheOf('cli'), 'datasets--ptb-text-only--ptb_text_only', 'refs', 'refs', 'convert', 'parquet')));
      const again = JSON.parse((await run(['--dataset', 'ptb', '--end', '2', '--offline'])).stdout);
      assert.strictEqual(again.nll, out.nll);
      const multi = JSON.parse((await run(['--dataset', 'hf:test-org/multi/data/file.parquet', '--field', 'body', '--dataset-revision', 'main'])).stdout);
      assert.strictEqual(multi.chunks, ds.chunkTexts(MAIN_ROWS, L).length);
      assert.strictEqual(multi.detokenizer, 'none');
      assert.strictEqual(multi.source.field, 'body');
      const lambada = JSON.parse((await run(['--dataset', 'lambada', '--end', '1'])).stdout);
      assert.strictEqual(lambada.dataset, 'lambada');
      assert.strictEqual(lambada.detokenizer, 'lambada');
      assert.strictEqual(lambada.source.repo, 'EleutherAI/lambada_openai');
      assert.strictEqual(lambada.chunks, 1);
      await assert.rejects(run(['--dataset', 'hf:nope']), (e) => e.code === 2 && /--dataset/.test(e.stderr));
      await assert.rejects(run(['--dataset', 'wikitext2', '--offline']), (e) => e.code === 1 && /Offline mode is on/.test(e.stderr));
    });
  });
});
