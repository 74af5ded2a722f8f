/** A one-line progress bar, redrawn in place; drawn only on a TTY (pipes and files get nothing). */
export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #label = '';
  #total = 1;
  #n = 0;
  #last = 0;

  /** `unit`: what the rate counts (`img` → `img/s`). */
  constructor(out: NodeJS.WriteStream, readonly unit = 'img') {
    this.#out = out;
    this.#tty = !!out.isTTY;
  }

  start(label: string, total: number): void {
    this.#label = label;
    this.#total = Math.max(1, total);
    this.#n = 0;
    this.#last = 0;
  }

  tick(status: string, perSecond: number): void {
    this.#n++;
    if (!this.#tty) return;
    const now = performance.now();
    if (now - this.#last < 80 && this.#n < this.#total) return;
    this.#last = now;
    const width = 24, filled = Math.round((width * this.#n) / this.#total);
    const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? (this.#n < this.#total ? '>' : '=') : '') + ' '.repeat(width - filled);
    this.#write(`${this.#label} [${bar}] ${this.#n}/${this.#total} ${status} ${Math.round(perSecond)} ${this.unit}/s`);
  }

  done(status: string): void {
    if (!this.#tty) return;
    this.#write(`${this.#label} ${status}`);
    this.#out.write('\n');
  }

  #write(line: string): void {
    const cols = this.#out.columns || 120;
    this.#out.write('\r' + line.slice(0, cols - 1).padEnd(Math.min(cols - 1, line.length + 8)) + '\x1b[K');
  }
}
