/**
 * Server-sent events on a raw Node response. Two kinds of writes:
 *
 * - `send`: messages that must all arrive (OpenAI chunks, errors, `[DONE]`); written at once
 *   (Node buffers them while the client is slow; there are few of them per request).
 * - `offer`: frames of which only the latest matters (denoising snapshots), one slot per key.
 *   While the socket is backed up, a newer frame replaces the one waiting in its slot (counted
 *   in `skipped`); waiting frames go out when the socket drains. The frame is built lazily, so
 *   a frame that is replaced costs nothing; the sampling loop is never made to wait.
 */
import type { ServerResponse } from 'http';

export class SseStream {
  readonly #res: ServerResponse;
  #backedUp = false;
  #ended = false;
  #pending = new Map<string, { event: string | null; build: () => unknown }>();
  #heartbeat: NodeJS.Timeout | null = null;
  /** frames replaced before they could be written */
  skipped = 0;
  /** frames written */
  framesSent = 0;

  constructor(res: ServerResponse, headers: Record<string, string> = {}) {
    this.#res = res;
    const all: Record<string, string> = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    };
    for (const [name, value] of Object.entries(all)) res.setHeader(name, value);
    res.writeHead(200);
    res.flushHeaders();
    res.on('drain', () => {
      this.#backedUp = false;
      this.#flushPending();
    });
    res.on('close', () => this.#stop());
    // a comment now and then keeps proxies from closing a stream that waits in the queue
    this.#heartbeat = setInterval(() => this.#write(': keep-alive\n\n'), 15000);
    this.#heartbeat.unref();
  }

  /** The client is gone or the stream was ended. */
  get closed(): boolean {
    return this.#ended || this.#res.destroyed || this.#res.writableEnded;
  }

  /** A message that must arrive (JSON data, optionally a named event). */
  send(data: unknown, event: string | null = null): void {
    this.#write(format(event, typeof data === 'string' ? data : JSON.stringify(data)));
  }

  /** A frame that a newer one under the same key may replace while the client is slow. */
  offer(key: string, event: string | null, build: () => unknown): void {
    if (this.closed) return;
    if (this.#pending.has(key)) this.skipped++;
    this.#pending.set(key, { event, build });
    if (!this.#backedUp) this.#flushPending();
  }

  /** Writes the frame waiting under `key` now, even into a backed-up socket (the final frame). */
  flush(key: string): void {
    const frame = this.#pending.get(key);
    if (!frame) return;
    this.#pending.delete(key);
    this.#writeFrame(frame);
  }

  /** Sends `data: [DONE]` and ends the response. */
  done(): void {
    this.#write('data: [DONE]\n\n');
    this.end();
  }

  end(): void {
    if (this.#ended) return;
    this.#pending.clear();
    this.#stop();
    this.#ended = true;
    if (!this.#res.destroyed && !this.#res.writableEnded) this.#res.end();
  }

  #stop(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }

  #flushPending(): void {
    for (const [key, frame] of this.#pending) {
      if (this.#backedUp) return;
      this.#pending.delete(key);
      this.#writeFrame(frame);
    }
  }

  #writeFrame(frame: { event: string | null; build: () => unknown }): void {
    const data = frame.build();
    if (data === undefined) return;
    this.framesSent++;
    this.send(data, frame.event);
  }

  #write(text: string): void {
    if (this.closed) return;
    if (!this.#res.write(text)) this.#backedUp = true;
  }
}

function format(event: string | null, data: string): string {
  // JSON never holds a raw newline; other strings are split across data lines as SSE requires
  const lines = data.split(/\r\n|\r|\n/).map((l) => `data: ${l}\n`).join('');
  return (event ? `event: ${event}\n` : '') + lines + '\n';
}
