/**
 * The terminal: stdout and stdin, Ctrl-C, and everything drawn on stderr (status lines, progress
 * bars, the live view of `generate --show-steps`). What is drawn on a TTY is cleared before other
 * output, errors or exit; on a pipe nothing is drawn at all.
 */
import type * as Lib from '../index';
import { EXIT_INTERRUPTED } from './args';
import { HdlmArgumentError } from '../errors';
import { createProgress, type Progress } from './progress';

export function out(text: string): void {
  process.stdout.write(text);
}

/** Most bytes `hdlm generate -` reads from stdin: a prompt is at most the model's length (1024 tokens for the released models). */
export const MAX_STDIN_BYTES = 1024 * 1024;

/** stdin as text, at most `maxBytes` (an HdlmArgumentError past that: an endless pipe must not fill memory). */
export async function readStdin(maxBytes = MAX_STDIN_BYTES): Promise<string> {
  if (process.stdin.isTTY && process.stderr.isTTY) process.stderr.write('(reading the prompt from stdin; end it with Ctrl-D)\n');
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of process.stdin) {
    total += (c as Buffer).length;
    if (total > maxBytes) {
      process.stdin.destroy();
      throw new HdlmArgumentError(`Expected a prompt of at most ${maxBytes} bytes for stdin but received more`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const cleanups = new Set<() => void>();

/** Clears whatever is drawn (before an error message or exit). */
export function clearTerminal(): void {
  for (const fn of [...cleanups]) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
  cleanups.clear();
}

/** Registers a function that clears something drawn; returns a function that unregisters it. */
export function onClear(fn: () => void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** SIGINT: abort the running operation; exit at once if nothing abortable runs, or on a second Ctrl-C. */
export const interrupt = {
  controller: new AbortController(),
  /** whether the running operation stops on `signal` (else Ctrl-C exits at once) */
  abortable: false,
  count: 0,
  get signal(): AbortSignal {
    return interrupt.controller.signal;
  },
  install(): void {
    process.on('SIGINT', interrupt.handler);
  },
  uninstall(): void {
    process.removeListener('SIGINT', interrupt.handler);
  },
  handler: (): void => {
    interrupt.count++;
    interrupt.controller.abort(new Error('SIGINT'));
    if (!interrupt.abortable || interrupt.count > 1) {
      clearTerminal();
      process.stderr.write('hdlm: interrupted\n');
      process.exit(EXIT_INTERRUPTED);
    }
  },
};

/** A one-line status on stderr (TTY only); returns the function that clears it. */
export function stderrStatus(text: string): () => void {
  if (!process.stderr.isTTY) return () => {};
  process.stderr.write(`\r${text}\x1b[K`);
  const clear = (): void => {
    process.stderr.write('\r\x1b[K');
    cleanups.delete(clear);
  };
  cleanups.add(clear);
  return clear;
}

/** A progress bar on stderr that clearTerminal() clears (draws nothing when stderr is not a TTY). */
export function stderrProgress(label: string, total: number | null, unit: 'step' | 'byte' | 'item'): Progress {
  const p = createProgress(process.stderr, label, total, { unit });
  const clear = (): void => p.clear();
  cleanups.add(clear);
  return {
    active: p.active,
    update: (d, e, t) => p.update(d, e, t),
    clear: () => p.clear(),
    done: (keep) => {
      cleanups.delete(clear);
      p.done(keep);
    },
  };
}

/** Hub download bars, one per file actually downloaded (TTY only). */
export function downloadProgress(): { onProgress: (e: { file: string; loaded: number; total: number | null }) => void; finish(): void } {
  const bars = new Map<string, Progress>();
  const finished = new Set<string>();
  const width = 24;
  return {
    onProgress(e) {
      if (!process.stderr.isTTY || finished.has(e.file)) return;
      let bar = bars.get(e.file);
      if (!bar) {
        const label = e.file.length > width ? '…' + e.file.slice(-(width - 1)) : e.file.padEnd(width);
        bar = stderrProgress(label, e.total, 'byte');
        bars.set(e.file, bar);
      }
      bar.update(e.loaded, '', e.total);
      if (e.total !== null && e.loaded >= e.total) {
        bar.done(true);
        bars.delete(e.file);
        finished.add(e.file);
      }
    },
    finish() {
      for (const bar of bars.values()) bar.done(true);
      bars.clear();
    },
  };
}

/** Token ids of one sample as text, masks drawn as ░ (control characters made visible-safe). */
export function liveText(ids: number[], maskId: number, decode: typeof Lib.decode, special: boolean): string {
  let s = '';
  let run: number[] = [];
  const flush = (): void => {
    if (run.length > 0) s += decode(run, { skipSpecialTokens: !special });
    run = [];
  };
  for (const id of ids) {
    if (id === maskId) {
      flush();
      s += '░';
    } else {
      run.push(id);
    }
  }
  flush();
  return s.replace(/\t/g, ' ').replace(/\r\n?/g, '\n').replace(/(?!\n)\p{Cc}/gu, ' '); // control characters but newlines
}

/** Redraws a block of text in place at the bottom of a terminal. */
export class LiveView {
  private rows = 0;
  private last = 0;
  constructor(private readonly stream: NodeJS.WriteStream) {}

  draw(text: string, status: string, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 40) return;
    this.last = now;
    const columns = Math.max(20, (this.stream.columns || 80) - 1);
    const maxRows = Math.max(3, (this.stream.rows || 24) - 2);
    const lines: string[] = [];
    for (const logical of text.split('\n')) {
      const chars = Array.from(logical);
      if (chars.length === 0) lines.push('');
      for (let i = 0; i < chars.length; i += columns) lines.push(chars.slice(i, i + columns).join(''));
    }
    if (lines.length > maxRows) {
      const hidden = lines.length - (maxRows - 1);
      lines.length = maxRows - 1;
      lines.push(`\x1b[2m… ${hidden} more line${hidden === 1 ? '' : 's'}\x1b[0m`);
    }
    lines.push(`\x1b[2m${Array.from(status).slice(0, columns).join('')}\x1b[0m`);
    this.stream.write(this.erase() + lines.join('\n'));
    this.rows = lines.length;
  }

  private erase(): string {
    if (this.rows === 0) return '';
    return '\r' + (this.rows > 1 ? `\x1b[${this.rows - 1}A` : '') + '\x1b[J';
  }

  clear(): void {
    if (this.rows > 0) this.stream.write(this.erase());
    this.rows = 0;
  }
}
