/**
 * A one-line progress bar for terminals, with no dependency. On a stream that is not a TTY
 * (a pipe, a file, CI logs) it writes nothing at all, so scripts never see it.
 *
 *   const bar = createProgress(process.stderr, 'sampling', 64, { unit: 'step' });
 *   bar.update(12);          // sampling [███▌        ]  12/64  0.4s  33 ms/step
 *   bar.done();              // clears the line
 */

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /**
   * How `done` / `total` read: 'step' (counts, with ms/step), 'byte' (sizes, with a transfer
   * rate), or 'item' (counts, no rate). Default 'item'.
   */
  unit?: 'step' | 'byte' | 'item';
  /** minimum milliseconds between two redraws (default 80); the final state is always drawn */
  throttleMs?: number;
}

export interface Progress {
  /** Progress so far; `extra` is shown after the numbers. `total` may change (null: unknown). */
  update(done: number, extra?: string, total?: number | null): void;
  /** Ends the bar: clears its line, or with `keep` draws the final state and moves to a new line. */
  done(keep?: boolean): void;
  /** Clears the line now (before writing other text to the same terminal); the next update redraws it. */
  clear(): void;
  /** Whether anything is drawn at all (the stream is a TTY). */
  readonly active: boolean;
}

const BLOCKS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** 1234567 -> '1.2 MB' (SI units, like the Hub shows sizes). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** 1234 -> '1.2s', 75000 -> '1m15s' */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

function bar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, fraction));
  const eighths = Math.round(f * width * 8);
  const full = Math.floor(eighths / 8);
  const part = BLOCKS[eighths % 8];
  return '█'.repeat(full) + part + ' '.repeat(Math.max(0, width - full - (part ? 1 : 0)));
}

/** Cuts a line to `width` columns (code points; enough for the ASCII-ish text drawn here). */
function fit(line: string, width: number): string {
  const chars = Array.from(line);
  return chars.length <= width ? line : chars.slice(0, Math.max(0, width - 1)).join('') + '…';
}

/**
 * A progress bar on `stream` (usually process.stderr). Draws only when `stream.isTTY`;
 * otherwise every method is a no-op. `total` null or 0 means unknown (no bar, counts only).
 */
export function createProgress(stream: ProgressStream, label: string, total: number | null, options: ProgressOptions = {}): Progress {
  const active = stream.isTTY === true;
  const unit = options.unit ?? 'item';
  const throttleMs = options.throttleMs ?? 80;
  const start = Date.now();
  let lastDraw = 0;
  let drawn = false;
  let dirty = false;
  let finished = false;
  let state = { done: 0, extra: '', total };

  const render = (): string => {
    const { done, extra } = state;
    const tot = state.total && state.total > 0 ? state.total : null;
    const elapsed = Date.now() - start;
    const count =
      unit === 'byte'
        ? tot ? `${formatBytes(done)}/${formatBytes(tot)}` : formatBytes(done)
        : tot ? `${String(done).padStart(String(tot).length)}/${tot}` : String(done);
    let rate = '';
    if (unit === 'step' && done > 0) rate = `${(elapsed / done).toFixed(elapsed / done < 10 ? 1 : 0)} ms/step`;
    if (unit === 'byte' && elapsed > 200) rate = `${formatBytes(Math.round((done * 1000) / elapsed))}/s`;
    const tail = [count, formatDuration(elapsed), rate, extra].filter((s) => s !== '').join('  ');
    const columns = stream.columns && stream.columns > 0 ? stream.columns : 80;
    const room = columns - 1; // never touch the last column: some terminals wrap there
    const barWidth = tot ? Math.min(30, room - Array.from(label).length - tail.length - 7) : 0;
    const pct = tot ? `${String(Math.floor((Math.min(done, tot) / tot) * 100)).padStart(3)}%` : '';
    const line = barWidth >= 5
      ? `${label} ${pct} ${bar(done / (tot as number), barWidth)} ${tail}`
      : [label, pct, tail].filter((s) => s !== '').join(' ');
    return fit(line, room);
  };

  const draw = (): void => {
    stream.write(`\r${render()}\x1b[K`);
    drawn = true;
    dirty = false;
    lastDraw = Date.now();
  };

  const clear = (): void => {
    if (active && drawn) stream.write('\r\x1b[K');
    drawn = false;
  };

  return {
    active,
    update(done: number, extra = '', newTotal?: number | null): void {
      if (!active || finished) return;
      state = { done, extra, total: newTotal === undefined ? state.total : newTotal };
      dirty = true;
      const complete = state.total !== null && state.total > 0 && done >= state.total;
      if (!drawn || complete || Date.now() - lastDraw >= throttleMs) draw();
    },
    done(keep = false): void {
      if (!active || finished) return;
      finished = true;
      if (keep) {
        if (dirty || !drawn) draw();
        stream.write('\n');
        drawn = false;
      } else {
        clear();
      }
    },
    clear,
  };
}
