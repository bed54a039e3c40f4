/**
 * Checkpoint configuration: reading config.json / config.yaml, detecting the model family and
 * deriving the architecture numbers, as upstream reads them (the keys and defaults of
 * configs/epsilon_hdlm.yaml and configs/gamma_hdlm.yaml; the modules of
 * hdlm/model/diffusion_lm.py: HDLM, HDLM_Gamma; hdlm/hf_utils.py: smart_model_loader). Pure
 * functions apart from readConfigFile.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as YAML from 'yaml';
import { Worker } from 'worker_threads';
import type { NativeArchitecture } from '../binding';
import type { SafetensorsHeader } from './checkpoint';
import { HdlmError, describe, invalidParameterError } from '../errors';

export type ModelFamily = 'epsilon_hybrid' | 'gamma_hybrid';

/** Architecture of a checkpoint: what the native builder needs, plus what sampling needs. */
export interface ModelArchitecture extends Omit<NativeArchitecture, 'family'> {
  family: ModelFamily;
  /** `model.length`: the training / default sampling context length */
  length: number;
  /** id of the mask (absorbing) state = vocabSize - 1, or -1 when the model has no mask state */
  maskId: number;
  /** the model has a mask state (vocabSize = tokens + 1) */
  hasMask: boolean;
  /** `tokenizer.tokens` (GPT-2: 50257) */
  tokens: number;
  /** `model.cond_dim` (sigma conditioning width; only meaningful for gamma) */
  condDim: number;
}

const FAMILIES: readonly ModelFamily[] = ['epsilon_hybrid', 'gamma_hybrid'];

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  return Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v;
}

/** Largest config read (upstream's configs are about 3 KB; a config.json about 1 KB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** YAML configs larger than this are parsed in a worker thread, off the event loop. */
const WORKER_YAML_BYTES = 64 * 1024;
/** Longest a worker may take on one config (the parse is linear: about 2 s per MiB on a slow CPU). */
const WORKER_TIMEOUT_MS = 30_000;
/** Aliases expanded in one config (a "billion laughs" document stops here). */
const MAX_YAML_ALIASES = 1000;

/**
 * Parses YAML config text in time linear in its size: the library's duplicate-key check is
 * pairwise (quadratic: 1.3 MB of keys took 51 s), so it is off and duplicate keys are found here
 * with one set per mapping; aliases are expanded at most MAX_YAML_ALIASES times, and an alias
 * inside the node it names (a cycle) or nesting deeper than MAX_CONFIG_DEPTH is refused. Throws an
 * Error whose message says what is wrong.
 */
export function parseYamlConfig(text: string): unknown {
  const doc = YAML.parseDocument(text, { uniqueKeys: false, logLevel: 'error' });
  if (doc.errors.length > 0) throw doc.errors[0];
  YAML.visit(doc, {
    Map(_, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!YAML.isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        if (seen.has(key)) throw new Error(`duplicate key ${JSON.stringify(key.length > 60 ? key.slice(0, 57) + '...' : key)}`);
        seen.add(key);
      }
    },
  });
  const value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES }) as unknown;
  checkShape(value);
  return value;
}

/** Deepest nesting accepted in a config (upstream's are 3 levels deep); deeper would overflow later walks. */
const MAX_CONFIG_DEPTH = 64;

/**
 * Throws on an object that contains itself (a YAML alias inside the node it names) and on nesting
 * deeper than MAX_CONFIG_DEPTH (JSON.stringify and other recursive walks would overflow the stack).
 */
function checkShape(root: unknown): void {
  const onPath = new Set<object>();
  const done = new Set<object>();
  // iterative depth-first walk: a deeply nested document must not overflow the stack
  const stack: { node: object; children: unknown[] | null }[] = [];
  const enter = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || done.has(v)) return;
    if (onPath.has(v)) throw new Error('an alias refers to a node that contains it (the config would be infinite)');
    if (stack.length >= MAX_CONFIG_DEPTH) throw new Error(`it is nested more than ${MAX_CONFIG_DEPTH} levels deep`);
    onPath.add(v);
    stack.push({ node: v, children: null });
  };
  enter(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    top.children ??= Array.isArray(top.node) ? [...top.node] : top.node instanceof Map ? [...top.node.values()] : Object.values(top.node);
    if (top.children.length > 0) {
      enter(top.children.pop());
    } else {
      stack.pop();
      onPath.delete(top.node);
      done.add(top.node);
    }
  }
}

function configError(filePath: string, problem: string, cause?: unknown): HdlmError {
  return new HdlmError('HDLM_BAD_FILE', `Invalid config file "${filePath}": ${problem}`, cause === undefined ? undefined : { cause });
}

/** The text of a config file: a regular file of at most MAX_CONFIG_BYTES, BOM dropped. */
function readConfigText(filePath: string): string {
  if (typeof filePath !== 'string' || filePath.length === 0) {
    throw invalidParameterError('filePath', 'a non-empty string', filePath);
  }
  let text: string;
  try {
    const st = fs.statSync(filePath);
    if (st.isDirectory()) throw configError(filePath, 'it is a directory, not a file');
    if (!st.isFile()) throw configError(filePath, 'it is not a regular file');
    if (st.size > MAX_CONFIG_BYTES) throw configError(filePath, `it is ${st.size} bytes long, more than the ${MAX_CONFIG_BYTES} bytes a config may have`);
    text = fs.readFileSync(filePath, 'utf8');
  } catch (e) {
    if (e instanceof HdlmError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw configError(filePath, code === 'ENOENT' ? 'the file does not exist' : `it cannot be read (${(e as Error).message})`, e);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function isYamlFile(filePath: string): boolean {
  const ext = path.extname(filePath).toLowerCase();
  return ext === '.yaml' || ext === '.yml';
}

function configObject(filePath: string, parsed: unknown, isYaml: boolean): Record<string, unknown> {
  if (!isPlainObject(parsed)) throw configError(filePath, `the top level must be an object, got ${kindOf(parsed)}`);
  if (!isYaml && isPlainObject(parsed.config)) return parsed.config;
  return parsed;
}

function parseConfigText(filePath: string, text: string, isYaml: boolean): unknown {
  try {
    if (isYaml) return parseYamlConfig(text);
    const value: unknown = JSON.parse(text);
    checkShape(value);
    return value;
  } catch (e) {
    throw configError(filePath, `it is not valid ${isYaml ? 'YAML' : 'JSON'} (${String((e as Error)?.message ?? e).split('\n')[0]})`, e);
  }
}

/**
 * Reads a checkpoint config. `.yaml` / `.yml` are parsed as YAML, anything else as JSON; at most
 * MAX_CONFIG_BYTES, in linear time. The top level must be an object (HdlmError HDLM_BAD_FILE
 * otherwise). A JSON file whose top level has an object-valued `"config"` key
 * (PyTorchModelHubMixin convention) yields that sub-object.
 */
export function readConfigFile(filePath: string): Record<string, unknown> {
  const text = readConfigText(filePath);
  const isYaml = isYamlFile(filePath);
  return configObject(filePath, parseConfigText(filePath, text, isYaml), isYaml);
}

/** readConfigFile without blocking the event loop: a large YAML config is parsed in a worker thread. */
export async function readConfigFileAsync(filePath: string): Promise<Record<string, unknown>> {
  const text = readConfigText(filePath);
  const isYaml = isYamlFile(filePath);
  if (!isYaml || Buffer.byteLength(text) <= WORKER_YAML_BYTES) return configObject(filePath, parseConfigText(filePath, text, isYaml), isYaml);
  const parsed = await new Promise<unknown>((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'config-worker.js'), {
      workerData: text,
      resourceLimits: { maxOldGenerationSizeMb: 512 },
      stdout: false,
      stderr: false,
    });
    const timer = setTimeout(() => {
      reject(configError(filePath, `parsing it took more than ${WORKER_TIMEOUT_MS / 1000} s`));
      void worker.terminate();
    }, WORKER_TIMEOUT_MS);
    worker.once('message', (m: { ok: boolean; value?: unknown; message?: string }) => {
      clearTimeout(timer);
      if (m.ok) resolve(m.value);
      else reject(configError(filePath, `it is not valid YAML (${m.message})`));
      void worker.terminate();
    });
    worker.once('error', (e) => {
      clearTimeout(timer);
      reject(configError(filePath, `it could not be parsed (${e.message})`, e));
    });
  });
  return configObject(filePath, parsed, true);
}

function get(obj: unknown, key: string): unknown {
  return isPlainObject(obj) && Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

function graphType(cfg: Record<string, unknown>): unknown {
  return get(cfg.graph, 'type');
}

/**
 * The model family (upstream hdlm/hf_utils.py: smart_model_loader): `requested` wins unless it is 'auto'. Auto: the config's
 * `model_type` if it names one of the two families; else `graph.type` ∈ {QGamma, gamma} →
 * gamma_hybrid; else epsilon_hybrid.
 */
export function detectFamily(cfg: Record<string, unknown>, requested: 'auto' | ModelFamily): ModelFamily {
  if (requested !== 'auto' && !FAMILIES.includes(requested)) {
    throw invalidParameterError('family', "'auto', 'epsilon_hybrid' or 'gamma_hybrid'", requested);
  }
  if (requested !== 'auto') return requested;
  if (!isPlainObject(cfg)) throw invalidParameterError('cfg', 'a config object', cfg);
  const mt = cfg.model_type;
  if (typeof mt === 'string' && (FAMILIES as readonly string[]).includes(mt)) return mt as ModelFamily;
  const gt = graphType(cfg);
  if (gt === 'QGamma' || gt === 'gamma') return 'gamma_hybrid';
  return 'epsilon_hybrid';
}

const DEFAULTS = { hidden_size: 768, n_heads: 12, n_blocks: 12, length: 1024, cond_dim: 128 } as const;

/**
 * Architecture numbers from a config (the defaults of upstream's configs/*.yaml; vocabulary size
 * and mask id as hdlm/model/diffusion_lm.py: HDLM / HDLM_Gamma size their embedding).
 * Throws HdlmError HDLM_BAD_FILE naming the config key when a value is unusable.
 * A gamma_hybrid family is returned as is (loading refuses it later).
 */
export function architectureOf(cfg: Record<string, unknown>, family: ModelFamily): ModelArchitecture {
  if (!isPlainObject(cfg)) throw invalidParameterError('cfg', 'a config object', cfg);
  if (!FAMILIES.includes(family)) throw invalidParameterError('family', "'epsilon_hybrid' or 'gamma_hybrid'", family);
  const badKey = (key: string, value: unknown, expected: string): HdlmError =>
    new HdlmError('HDLM_BAD_FILE', `Invalid model config: ${key} must be ${expected}, got ${describe(value)}`);
  const positiveInt = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw badKey(key, value, 'a positive integer');
    return value;
  };

  const model = cfg.model;
  if (model !== undefined && model !== null && !isPlainObject(model)) throw badKey('model', model, 'an object');
  const fromModel = (k: keyof typeof DEFAULTS): number => {
    const v = get(model, k);
    return positiveInt(`model.${k}`, v === undefined || v === null ? DEFAULTS[k] : v);
  };
  const hiddenSize = fromModel('hidden_size');
  const nHeads = fromModel('n_heads');
  const nBlocks = fromModel('n_blocks');
  const length = fromModel('length');
  const condDim = fromModel('cond_dim');
  if (hiddenSize % nHeads !== 0) {
    throw new HdlmError('HDLM_BAD_FILE', `Invalid model config: model.hidden_size (${hiddenSize}) is not a multiple of model.n_heads (${nHeads})`);
  }
  if ((hiddenSize / nHeads) % 2 !== 0) {
    throw new HdlmError(
      'HDLM_BAD_FILE',
      `Invalid model config: the head dimension model.hidden_size / model.n_heads = ${hiddenSize / nHeads} must be even (rotary embedding)`,
    );
  }

  const tokCfg = get(cfg.tokenizer, 'tokens');
  const tokenKey = tokCfg !== undefined && tokCfg !== null ? 'tokenizer.tokens' : cfg.tokens !== undefined && cfg.tokens !== null ? 'tokens' : null;
  const tokens = tokenKey === null ? 50257 : positiveInt(tokenKey, tokenKey === 'tokenizer.tokens' ? tokCfg : cfg.tokens);

  const gt = graphType(cfg);
  const hasMask = cfg.model_type === 'epsilon_hybrid' || gt === 'absorb' || gt === 'hybrid' || gt === 'QGamma';
  const vocabSize = hasMask ? tokens + 1 : tokens;
  const maskId = hasMask ? vocabSize - 1 : -1;
  return { family, vocabSize, hiddenSize, nHeads, nBlocks, length, maskId, hasMask, tokens, condDim };
}

type ArchForCheck = Pick<ModelArchitecture, 'family' | 'vocabSize' | 'hiddenSize' | 'nHeads' | 'nBlocks'> & { condDim?: number };

/** The state-dict keys and shapes a checkpoint of this architecture must have (upstream hdlm/model/diffusion_lm.py: HDLM, HDLM_Gamma). */
export function expectedTensorShapes(arch: ArchForCheck): Map<string, number[]> {
  const V = arch.vocabSize;
  const D = arch.hiddenSize;
  const m = new Map<string, number[]>();
  m.set('vocab_embed.embedding', [V, D]);
  for (let i = 0; i < arch.nBlocks; i++) {
    const b = `blocks.${i}.`;
    m.set(b + 'norm1.weight', [D]);
    m.set(b + 'attn_qkv.weight', [3 * D, D]);
    m.set(b + 'attn_out.weight', [D, D]);
    m.set(b + 'norm2.weight', [D]);
    m.set(b + 'mlp.0.weight', [4 * D, D]);
    m.set(b + 'mlp.0.bias', [4 * D]);
    m.set(b + 'mlp.2.weight', [D, 4 * D]);
    m.set(b + 'mlp.2.bias', [D]);
  }
  m.set('output_layer.norm_final.weight', [D]);
  m.set('output_layer.linear.weight', [V, D]);
  m.set('output_layer.linear.bias', [V]);
  if (arch.family === 'gamma_hybrid') {
    const C = arch.condDim ?? DEFAULTS.cond_dim;
    for (let i = 0; i < arch.nBlocks; i++) {
      m.set(`blocks.${i}.adaLN_modulation.weight`, [6 * D, C]);
      m.set(`blocks.${i}.adaLN_modulation.bias`, [6 * D]);
    }
    m.set('sigma_map.mlp.0.weight', [C, 256]);
    m.set('sigma_map.mlp.0.bias', [C]);
    m.set('sigma_map.mlp.2.weight', [C, C]);
    m.set('sigma_map.mlp.2.bias', [C]);
  }
  return m;
}

/** Optional tensors: checked for shape when present. */
function optionalTensorShapes(arch: ArchForCheck): Map<string, number[]> {
  return new Map([['rotary_emb.inv_freq', [arch.hiddenSize / arch.nHeads / 2]]]);
}

/**
 * Checks that a safetensors header holds every tensor the architecture needs, with the right
 * shape (see expectedTensorShapes; `rotary_emb.inv_freq` is optional). Extra tensors are allowed.
 * Throws HdlmError HDLM_BAD_FILE listing missing keys, or naming the first wrong shape.
 */
export function checkWeightsAgainstArchitecture(header: SafetensorsHeader, arch: ArchForCheck): void {
  const where = header.path ? `"${header.path}"` : 'the weights file';
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const expected = expectedTensorShapes(arch);
  const missing = [...expected.keys()].filter((k) => !byName.has(k));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ');
    const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
    throw new HdlmError(
      'HDLM_BAD_FILE',
      `Checkpoint ${where} does not match its config (${arch.family}, hidden ${arch.hiddenSize}, ${arch.nBlocks} blocks, ` +
        `vocabulary ${arch.vocabSize}): ${missing.length} tensor${missing.length === 1 ? ' is' : 's are'} missing: ${shown}${more}`,
    );
  }
  const all = [...expected, ...optionalTensorShapes(arch)];
  for (const [name, shape] of all) {
    const t = byName.get(name);
    if (!t) continue;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new HdlmError(
        'HDLM_BAD_FILE',
        `Checkpoint ${where} does not match its config (${arch.family}, hidden ${arch.hiddenSize}, ${arch.nHeads} heads, ` +
          `vocabulary ${arch.vocabSize}): tensor ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`,
      );
    }
  }
}

/** What the native gamma builder needs beyond the architecture (the switches of upstream hdlm/model/diffusion_lm.py: HDLM_Gamma). */
export interface GammaSwitches {
  /** `graph.gamma` (γ of the embedding interpolation and of the QGamma graph) */
  gamma: number;
  /** embedding interpolation toward the mask row: graph.type ∈ {hybrid, QGamma} and model.hybrid_sigma_embedding */
  radd: boolean;
  /** `model.transformer_sigma_conditioning` (adaLN in every block) */
  sigmaConditioning: boolean;
  /** `model.use_timestep_embedding` (the model has sigma_map) */
  timestepEmbedding: boolean;
  /** `model.scale_by_sigma` */
  scaleBySigma: boolean;
  /** `model.post_process_logits` with annealing.sampling_method ∈ {AR, AR_BAD, AR_SCRATCH} (upstream post_process_logits, first rule) */
  postProcessAR: boolean;
}

/**
 * Gamma switches from a config. Upstream reads each key without a default; a missing key takes
 * the value of upstream's gamma config (`configs/gamma_hdlm.yaml`): every switch
 * on, γ = 0.01. A present key of the wrong type is HDLM_BAD_FILE.
 */
export function gammaSwitchesOf(cfg: Record<string, unknown>): GammaSwitches {
  const bool = (section: string, key: string, dflt: boolean): boolean => {
    const v = get(cfg[section], key);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw new HdlmError('HDLM_BAD_FILE', `Invalid model config: ${section}.${key} must be a boolean, got ${describe(v)}`);
    return v;
  };
  const g = get(cfg.graph, 'gamma');
  if (g !== undefined && g !== null && (typeof g !== 'number' || !Number.isFinite(g))) {
    throw new HdlmError('HDLM_BAD_FILE', `Invalid model config: graph.gamma must be a finite number, got ${describe(g)}`);
  }
  const gamma = typeof g === 'number' ? g : 0.01;
  const gt = graphType(cfg);
  const radd = (gt === 'hybrid' || gt === 'QGamma') && bool('model', 'hybrid_sigma_embedding', true);
  const method = get(cfg.annealing, 'sampling_method');
  const postProcessAR = bool('model', 'post_process_logits', true) && (method === 'AR' || method === 'AR_BAD' || method === 'AR_SCRATCH');
  return {
    gamma,
    radd,
    sigmaConditioning: bool('model', 'transformer_sigma_conditioning', true),
    timestepEmbedding: bool('model', 'use_timestep_embedding', true),
    scaleBySigma: bool('model', 'scale_by_sigma', true),
    postProcessAR,
  };
}
