/**
 * GPT-2 checkpoints (Hugging Face layout: config.json + model.safetensors) loaded Python-free
 * for the evaluation metrics: the native side builds a TorchScript GPT-2 the same way
 * it builds HDLM models. Used for the GPT-2 perplexity of generated samples and for MAUVE's
 * features (the last token's final hidden state).
 */
import * as fs from 'fs';
import * as path from 'path';
import { addon, type NativeEvalResult, type NativeJob, type NativeModel } from '../binding';
import { encode } from '../core/tokenizer';
import { readSafetensorsHeader } from '../core/checkpoint';
import { HdlmError, invalidParameterError } from '../errors';
import { looksLikeRepoId, resolveRepoFiles, type HubOptions } from '../hub';
import { resolveDevice } from '../core/loader';
import { callNative, toHdlmError } from '../core/model';
import * as v from '../validate';
import { UPSTREAM_MAUVE_MAX_TEXT_LENGTH } from './mauve';

export interface Gpt2LoadOptions extends HubOptions {
  /** 'auto' (default), 'cpu', 'cuda', 'cuda:N' */
  device?: string;
}

export interface Gpt2Config {
  nEmbd: number;
  nHead: number;
  nLayer: number;
  nPositions: number;
  vocabSize: number;
  layerNormEpsilon: number;
}

export class Gpt2Model {
  #native: NativeModel | null;
  readonly config: Gpt2Config;
  readonly device: string;
  readonly source: string;

  /** @internal use loadGpt2 */
  constructor(native: NativeModel, config: Gpt2Config, device: string, source: string) {
    this.#native = native;
    this.config = config;
    this.device = device;
    this.source = source;
  }

  #live(): NativeModel {
    if (!this.#native) throw new HdlmError('HDLM_DISPOSED', 'This Gpt2Model has been disposed');
    return this.#native;
  }

  /** Logits [batch, length, vocab] of equal-length rows of ids (causal: position l sees 0..l). */
  async forward(rows: number[][]): Promise<{ data: Float32Array; shape: [number, number, number] }> {
    const x = v.tokenRows('tokens', rows, this.config.vocabSize);
    const native = this.#live();
    return callNative(() => native.forward(x.data, x.rows, x.cols, null, null, false));
  }

  /**
   * Σ_{l=1..L−1} −log p(x_l | x_<l) of each row (natural log), `batchSize` rows per forward.
   * Rows must have equal lengths of 2..nPositions ids in [0, vocabSize).
   */
  async sequenceNll(rows: number[][], options: { batchSize?: number; signal?: AbortSignal } = {}): Promise<number[]> {
    const x = v.tokenRows('rows', rows, this.config.vocabSize);
    if (x.cols < 2 || x.cols > this.config.nPositions) {
      throw invalidParameterError('rows', `rows of 2..${this.config.nPositions} ids`, `${x.cols} ids`);
    }
    const batchSize = v.isDefined(options.batchSize) ? v.integer('batchSize', options.batchSize, 1) : 4;
    const native = this.#live();
    const job = native.evaluate({
      op: 'causal_nll', tokens: x.data, rows: x.rows, length: x.cols, batchSize, repetitions: 1, samplingEps: 0, maskId: 0, sigma: 0, seed: 0n,
    });
    const r = await awaitJob(job, options.signal);
    return Array.from(r.values);
  }

  /**
   * The final hidden state (after ln_f; HF's hidden_states[-1]) at the last position of each row:
   * one Float32Array of nEmbd values per row. Rows may differ in length (1..nPositions ids);
   * rows of one length run `batchSize` per forward. Causal attention makes this what a
   * right-padded batch with an attention mask gives (mauve-text's featurize_tokens_from_model).
   */
  async lastHiddenStates(rows: number[][], options: { batchSize?: number; signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    if (!Array.isArray(rows) || rows.length === 0) throw invalidParameterError('rows', 'a non-empty array of id arrays', rows);
    const batchSize = v.isDefined(options.batchSize) ? v.integer('batchSize', options.batchSize, 1) : 8;
    const signal = v.isDefined(options.signal) ? v.abortSignal('signal', options.signal) : undefined;
    const byLength = new Map<number, number[]>();
    rows.forEach((row, i) => {
      if (!Array.isArray(row) || row.length < 1 || row.length > this.config.nPositions) {
        throw invalidParameterError(`rows[${i}]`, `an array of 1..${this.config.nPositions} ids`, row);
      }
      byLength.set(row.length, [...(byLength.get(row.length) ?? []), i]);
    });
    const out: Float32Array[] = new Array<Float32Array>(rows.length);
    for (const [length, indices] of byLength) {
      const x = v.tokenRows('rows', indices.map((i) => rows[i]), this.config.vocabSize);
      const native = this.#live();
      const job = native.evaluate({
        op: 'last_hidden', tokens: x.data, rows: x.rows, length, batchSize, repetitions: 1, samplingEps: 0, maskId: 0, sigma: 0, seed: 0n,
      });
      const r = await awaitJob(job, signal);
      indices.forEach((i, k) => {
        out[i] = Float32Array.from(r.values.subarray(k * r.cols, (k + 1) * r.cols));
      });
    }
    return out;
  }

  /**
   * MAUVE features of texts as mauve-text computes them (featurize_tokens_from_model): each text
   * GPT-2-encoded, cut to its first `maxTextLength` tokens (default 128, upstream's
   * max_text_length), and the last token's final hidden state. Empty texts are the caller's to
   * drop (mauve-text drops them before featurising).
   */
  async textFeatures(texts: readonly string[], options: { maxTextLength?: number; batchSize?: number; signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    const maxLen = v.isDefined(options.maxTextLength) ? v.integer('maxTextLength', options.maxTextLength, 1) : UPSTREAM_MAUVE_MAX_TEXT_LENGTH;
    if (maxLen > this.config.nPositions) {
      throw invalidParameterError('maxTextLength', `at most this GPT-2's n_positions (${this.config.nPositions})`, maxLen);
    }
    if (!Array.isArray(texts)) throw invalidParameterError('texts', 'an array of strings', texts);
    const rows = texts.map((t, i) => {
      if (typeof t !== 'string' || t.length === 0) throw invalidParameterError(`texts[${i}]`, 'a non-empty string', t);
      const ids = encode(t, { allowSpecial: true }).slice(0, maxLen);
      if (ids.length === 0) throw invalidParameterError(`texts[${i}]`, 'a text with at least one GPT-2 token', t);
      return ids;
    });
    return this.lastHiddenStates(rows, { batchSize: options.batchSize, signal: options.signal });
  }

  dispose(): void {
    if (this.#native) {
      this.#native.dispose();
      this.#native = null;
    }
  }
}

async function awaitJob(job: NativeJob<NativeEvalResult>, signal: AbortSignal | undefined): Promise<NativeEvalResult> {
  const onAbort = (): void => job.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await job.promise;
  } catch (e) {
    throw toHdlmError(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function intField(cfg: Record<string, unknown>, names: string[], file: string): number {
  for (const n of names) {
    const x = cfg[n];
    if (typeof x === 'number' && Number.isInteger(x) && x > 0) return x;
  }
  throw new HdlmError('HDLM_BAD_FILE', `${file}: GPT-2 config needs a positive integer ${names.join(' / ')}`);
}

/**
 * Loads a GPT-2 checkpoint: a directory with config.json + model.safetensors, or a hub repo id
 * (default use: 'openai-community/gpt2-large'), through the same cache / offline machinery as
 * HDLM models. Weights may carry a `transformer.` prefix; F32, BF16 or F16.
 */
export async function loadGpt2(modelPath: string, options: Gpt2LoadOptions = {}): Promise<Gpt2Model> {
  const p = v.nonEmptyString('gpt2 model path', modelPath);
  let configFile: string;
  let weightsFile: string;
  let source: string;
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    configFile = path.join(p, 'config.json');
    weightsFile = path.join(p, 'model.safetensors');
    if (!fs.existsSync(configFile) || !fs.existsSync(weightsFile)) {
      throw new HdlmError('HDLM_BAD_FILE', `${p}: a GPT-2 checkpoint needs config.json and model.safetensors`);
    }
    source = path.resolve(p);
  } else if (looksLikeRepoId(p)) {
    const { device: _device, ...hub } = options;
    void _device;
    const r = await resolveRepoFiles(p, [{ names: ['config.json'] }, { names: ['model.safetensors'] }], hub);
    configFile = r.files['config.json'];
    weightsFile = r.files['model.safetensors'];
    source = `${p}@${r.commit}`;
  } else {
    throw new HdlmError('HDLM_BAD_FILE', `${p} is neither a GPT-2 checkpoint directory nor a hub repo id ("owner/name")`);
  }
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new HdlmError('HDLM_BAD_FILE', `${configFile}: ${(e as Error).message}`, { cause: e });
  }
  const config: Gpt2Config = {
    nEmbd: intField(cfg, ['n_embd', 'hidden_size'], configFile),
    nHead: intField(cfg, ['n_head', 'num_attention_heads'], configFile),
    nLayer: intField(cfg, ['n_layer', 'num_hidden_layers'], configFile),
    nPositions: intField(cfg, ['n_positions', 'n_ctx', 'max_position_embeddings'], configFile),
    vocabSize: intField(cfg, ['vocab_size'], configFile),
    layerNormEpsilon: typeof cfg.layer_norm_epsilon === 'number' ? cfg.layer_norm_epsilon : 1e-5,
  };
  const header = readSafetensorsHeader(weightsFile);
  const device = resolveDevice(options.device);
  const native = await callNative(() =>
    addon().buildGpt2({
      weightsPath: weightsFile,
      fileSize: header.fileSize,
      configJson: JSON.stringify({ ...cfg, layer_norm_epsilon: config.layerNormEpsilon }),
      device,
      nHeads: config.nHead,
      nLayers: config.nLayer,
      tensors: header.tensors,
    }),
  );
  return new Gpt2Model(native, config, device, source);
}
