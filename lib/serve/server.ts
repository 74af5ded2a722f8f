/**
 * The HTTP front of an InferenceModel, on Node's own http module (no framework: four routes do not need one).
 *
 *   POST /predict   application/json {"inputs": [[...], ...]}  →  {"outputs": [[...], ...], "classes": [argmax, ...]}
 *                   application/octet-stream: rows × inputs float32 little-endian  →  rows × outputs float32,
 *                   with the header `X-Shape: rows,outputs`
 *   GET  /health    {"status": "ok"} (503 {"status": "draining"} while shutting down)
 *   GET  /info      the model (layers, sizes, pattern per layer, nmsparse version), the limits and counters;
 *                   never the host's paths or the training configuration
 *
 * Every error is JSON {"error": {"code", "message"}} with a 4xx status for the client's mistakes (400 malformed,
 * 404, 405, 408 too slow, 411, 413 too large, 415 content type) and 500 for ours; 503 when shutting down or full
 * (connections, requests in flight). The server keeps serving: bodies are bounded (JSON more tightly, since it is
 * parsed on the event loop, after a scan that rejects nesting deeper than {"inputs": [[...]]} at once), and every
 * timeout is enforced within a quarter of its length. Once /predict has been quiet for idleTrimMs (6 s), the host
 * memory a burst left free goes back to the system (malloc_trim on glibc; under node --expose-gc after a full
 * collection).
 * close() shuts down gracefully: it stops accepting, lets in-flight requests finish (answering them with
 * `Connection: close`), closes idle keep-alive connections, then resolves.
 */
import * as http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { native, packageRoot } from '../native.js';
import { NmSparseError, fail as failWith } from '../errors.js';
import { checkOptions } from '../tensor.js';
import { InferenceModel } from './model.js';

export interface ServerOptions {
  /** Port (default 8080; 0 picks a free one). */
  port?: number;
  /** Interface to bind (default 127.0.0.1, loopback only). */
  host?: string;
  /** Largest request body accepted, in bytes (default 8 MiB); larger → 413. */
  maxBodyBytes?: number;
  /** Largest JSON request body, in bytes (default 2 MiB: 256 MNIST rows are ~1 MB; at most maxBodyBytes); larger → 413. */
  maxJsonBytes?: number;
  /** Most open connections (default 512, below the usual 1024 file descriptors); more → 503 and closed. */
  maxConnections?: number;
  /** Most /predict requests being received or computed at once (default 64); more → 503. */
  maxInFlight?: number;
  /** Time allowed to receive the request headers (default 10 s, at most requestTimeoutMs); → 408. */
  headersTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open (default 5 s). */
  keepAliveTimeoutMs?: number;
  /** Most rows in one request (default 1024); more → 413. */
  maxRows?: number;
  /** Time allowed to receive a whole request (default 30 s); → 408. */
  requestTimeoutMs?: number;
  /**
   * How long /predict stays quiet before the server gives back the memory a burst left free (default 6 s; 0:
   * never). glibc keeps its heap at the burst's high-water mark (after a hostile burst, 40 MB of the main arena
   * held with 15 MB in use) until malloc_trim; under node --expose-gc a full collection comes first, and V8
   * shrinks its young generation in one only once it has seen 5 s of low allocation, hence the default.
   */
  idleTrimMs?: number;
  /** Receives one line per notable event (start, shutdown, 5xx errors). Default: nothing. */
  log?: (line: string) => void;
}

export interface ServerStats {
  requests: number;
  /** Requests and connections answered 503 because the server was full. */
  rejectedFull: number;
  predictions: number;
  rows: number;
  clientErrors: number;
  serverErrors: number;
}

export interface RunningServer {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly server: http.Server;
  readonly stats: Readonly<ServerStats>;
  /** Graceful shutdown; in-flight requests get `graceMs` (default 10 s) before their connections are cut. */
  close(opts?: { graceMs?: number }): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) { super(message); }
}

const JSON_TYPE = 'application/json; charset=utf-8';
const VERSION = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
const JSON_LIKE = new Set(['application/json', '', 'text/plain', 'application/x-www-form-urlencoded']);
/** How long after a collection the idle trim waits for V8's background thread to free what it collected. */
const GC_SETTLE_MS = 200;

function send(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Reads the body, enforcing the size limit and `check` (which throws) as bytes arrive (Content-Length may be absent or lie). */
function readBody(req: http.IncomingMessage, limit: number, check?: (chunk: Buffer) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      reject(new HttpError(413, 'E_TOO_LARGE', `request body of ${declared} bytes is over the ${limit}-byte limit`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new HttpError(413, 'E_TOO_LARGE', `request body is over the ${limit}-byte limit`));
        return;
      }
      try {
        check?.(c);
      } catch (e) {
        failed = true;
        chunks.length = 0;
        reject(e);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => { if (!failed) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)); });
    req.on('error', (e) => { if (!failed) { failed = true; reject(e); } });
  });
}

/**
 * A check for readBody that throws once brackets nest deeper than `max` outside strings, as the chunks arrive:
 * a body of nested brackets is refused at its 4th byte, unread beyond its first chunk, instead of costing
 * JSON.parse seconds of event loop.
 */
function nestingCheck(max: number): (chunk: Buffer) => void {
  let depth = 0, inString = false, escaped = false, at = 0;
  return (chunk) => {
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (escaped) escaped = false;
      else if (inString) {
        if (c === 0x5c) escaped = true;
        else if (c === 0x22) inString = false;
      } else if (c === 0x22) inString = true;
      else if (c === 0x5b || c === 0x7b) {
        if (++depth > max) throw new HttpError(400, 'E_JSON', `body nests deeper than {"inputs": [[...], ...]} (at byte ${at + i})`);
      } else if (c === 0x5d || c === 0x7d) depth--;
    }
    at += chunk.length;
  };
}

/** {"inputs": [[...], ...]} → rows as one Float32Array, every rule checked. */
function parseJsonInputs(body: Buffer, inF: number, maxRows: number): { x: Float32Array; rows: number } {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new HttpError(400, 'E_JSON', `body is not valid JSON: ${(e as Error).message}`);
  }
  const inputs = (json as { inputs?: unknown } | null)?.inputs;
  if (json === null || typeof json !== 'object' || Array.isArray(json) || !Array.isArray(inputs))
    throw new HttpError(400, 'E_VALUE', 'expected a JSON object {"inputs": [[...], ...]}');
  if (inputs.length === 0) throw new HttpError(400, 'E_SHAPE', '"inputs" is empty: expected at least one row');
  if (inputs.length > maxRows) throw new HttpError(413, 'E_TOO_LARGE', `"inputs" has ${inputs.length} rows, over the limit of ${maxRows}`);
  const x = new Float32Array(inputs.length * inF);
  for (let r = 0; r < inputs.length; r++) {
    const row = inputs[r];
    if (!Array.isArray(row) || row.length !== inF)
      throw new HttpError(400, 'E_SHAPE', `inputs[${r}]: expected an array of ${inF} numbers, got ${Array.isArray(row) ? `${row.length} values` : typeof row}`);
    for (let j = 0; j < inF; j++) {
      const v = row[j];
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new HttpError(400, 'E_VALUE', `inputs[${r}][${j}]: expected a finite number, got ${JSON.stringify(v)}`);
      x[r * inF + j] = v;
    }
  }
  return { x, rows: inputs.length };
}

function parseRawInputs(body: Buffer, inF: number, maxRows: number): { x: Float32Array; rows: number } {
  const rowBytes = inF * 4;
  if (body.length === 0 || body.length % rowBytes !== 0)
    throw new HttpError(400, 'E_SHAPE', `raw body of ${body.length} bytes is not a whole number of rows of ${inF} float32 values (${rowBytes} bytes each)`);
  const rows = body.length / rowBytes;
  if (rows > maxRows) throw new HttpError(413, 'E_TOO_LARGE', `raw body has ${rows} rows, over the limit of ${maxRows}`);
  const x = new Float32Array(rows * inF); // a copy: aligned, and independent of the socket's buffer
  new Uint8Array(x.buffer).set(body);
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]))
      throw new HttpError(400, 'E_VALUE', `row ${Math.floor(i / inF)}, value ${i % inF}: expected a finite float32, got ${x[i]}`);
  return { x, rows };
}

/** {"outputs": [[...], ...], "classes": [...]}: the logits and each row's argmax (first of equal maxima). */
function jsonOutputs(y: Float32Array, rows: number, outF: number): string {
  const parts: string[] = new Array(rows), classes: number[] = new Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = y.subarray(r * outF, (r + 1) * outF);
    parts[r] = '[' + Array.prototype.join.call(row, ',') + ']';
    let best = 0;
    for (let j = 1; j < outF; j++) if (row[j] > row[best]) best = j;
    classes[r] = best;
  }
  return '{"outputs":[' + parts.join(',') + '],"classes":[' + classes.join(',') + ']}';
}

function mediaType(req: http.IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
export const isLoopback = (host: string): boolean => LOOPBACK.has(host);

function checkInt(v: unknown, arg: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw new NmSparseError('E_VALUE', `${arg}: got ${String(v)}, expected an integer in [${min}, ${max}]`);
  return v;
}

/** Starts serving `model`; resolves once listening. */
export async function startServer(model: InferenceModel, options: ServerOptions = {}): Promise<RunningServer> {
  if (!(model instanceof InferenceModel)) failWith('E_TYPE', 'model', model, 'an InferenceModel (InferenceModel.load(file))');
  const opts = checkOptions<ServerOptions>(options);
  const host = opts.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') throw new NmSparseError('E_VALUE', `options.host: got ${String(host)}, expected an interface address`);
  const port = checkInt(opts.port ?? 8080, 'options.port', 0, 65535);
  const maxBodyBytes = checkInt(opts.maxBodyBytes ?? 8 << 20, 'options.maxBodyBytes', 1, 2 ** 31);
  const maxJsonBytes = Math.min(maxBodyBytes, checkInt(opts.maxJsonBytes ?? 2 << 20, 'options.maxJsonBytes', 1, 2 ** 31));
  const maxRows = checkInt(opts.maxRows ?? 1024, 'options.maxRows', 1, 2 ** 24);
  const maxConnections = checkInt(opts.maxConnections ?? 512, 'options.maxConnections', 1, 1 << 20);
  const maxInFlight = checkInt(opts.maxInFlight ?? 64, 'options.maxInFlight', 1, 1 << 20);
  const requestTimeoutMs = checkInt(opts.requestTimeoutMs ?? 30_000, 'options.requestTimeoutMs', 1, 3_600_000);
  const headersTimeoutMs = checkInt(opts.headersTimeoutMs ?? Math.min(requestTimeoutMs, 10_000), 'options.headersTimeoutMs', 1, requestTimeoutMs);
  const keepAliveTimeoutMs = checkInt(opts.keepAliveTimeoutMs ?? 5_000, 'options.keepAliveTimeoutMs', 1, 3_600_000);
  const idleTrimMs = checkInt(opts.idleTrimMs ?? 6_000, 'options.idleTrimMs', 0, 3_600_000);
  const log = opts.log ?? (() => undefined);
  const inF = model.inFeatures, outF = model.outFeatures;
  const stats: ServerStats = { requests: 0, rejectedFull: 0, predictions: 0, rows: 0, clientErrors: 0, serverErrors: 0 };
  let draining = false;
  let inFlight = 0;
  const started = Date.now();
  // One timer, re-armed while /predict is busy: trims once per quiet spell, idleTrimMs after the last request.
  let lastPredict = 0, trimTimer: NodeJS.Timeout | null = null;
  const trim = (): void => {
    trimTimer = null;
    native.trimHostMemory();
    if (Date.now() - lastPredict < idleTrimMs) trimTimer = setTimeout(check, idleTrimMs).unref(); // requests came meanwhile
  };
  const check = (): void => {
    const wait = lastPredict + idleTrimMs - Date.now();
    if (inFlight > 0 || wait > 0) { trimTimer = setTimeout(check, Math.max(wait, 50)).unref(); return; }
    // Under node --expose-gc a full collection first: it frees the dead buffers (and shrinks V8's young
    // generation), which an idle process never collects on its own. V8 frees their memory on a background
    // thread shortly after, so the trim waits for it.
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) { trim(); return; }
    gc();
    trimTimer = setTimeout(trim, GC_SETTLE_MS).unref();
  };
  const trimWhenIdle = (): void => {
    lastPredict = Date.now();
    if (trimTimer || idleTrimMs === 0 || draining) return;
    trimTimer = setTimeout(check, idleTrimMs).unref();
  };
  // What clients learn about the model: its shape, patterns and version, not the host's file path or the
  // training configuration the file's metadata records (output directories included).
  const { file: _file, metadata: _metadata, ...shape } = model.info();
  const publicInfo = { ...shape, version: VERSION };

  const fail = (res: http.ServerResponse, e: unknown): void => {
    // The client went away mid-request (or Node timed it out, answered 408 and closed: counted in clientError):
    // nobody is left to answer, and it is not our error.
    if (res.headersSent || (res.req.destroyed && (e as NodeJS.ErrnoException)?.code === 'ECONNRESET')) { res.destroy(); return; }
    let status = 500, code = 'E_INTERNAL', message = 'internal error';
    if (e instanceof HttpError) ({ status, code, message } = e);
    else if (e instanceof NmSparseError && (e.code === 'E_SHAPE' || e.code === 'E_VALUE')) ({ status, code, message } = { status: 400, code: e.code, message: e.message });
    else log(`error: ${(e as Error)?.stack ?? String(e)}`);
    if (status >= 500) stats.serverErrors++;
    else stats.clientErrors++;
    // A body answered before its end (415, 503, a refused nesting) whose declared length is within the limit is
    // read to its end and dropped, the connection kept: closing a socket with unread bytes makes the kernel reset
    // it, which can destroy the answer before the client reads it. A longer or unbounded (chunked) one: closed.
    const declared = Number(res.req.headers['content-length']);
    const readToEnd = res.req.complete || (Number.isSafeInteger(declared) && declared <= maxBodyBytes);
    const headers: http.OutgoingHttpHeaders = !readToEnd || draining ? { Connection: 'close' } : {};
    if (code === 'E_BUSY') headers['Retry-After'] = '1';
    if (status === 405) headers.Allow = (e as HttpError & { allow?: string }).allow ?? 'GET';
    send(res, status, { error: { code, message } }, headers);
  };

  async function predict(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const type = mediaType(req);
    const raw = type === 'application/octet-stream';
    // JSON also under the types plain clients send by default (curl -d: x-www-form-urlencoded).
    if (!raw && !JSON_LIKE.has(type))
      throw new HttpError(415, 'E_CONTENT_TYPE', `Content-Type ${JSON.stringify(type)} is not supported: use application/json or application/octet-stream`);
    if (inFlight >= maxInFlight) {
      stats.rejectedFull++;
      throw new HttpError(503, 'E_BUSY', `${inFlight} requests in flight, the limit is ${maxInFlight}: retry later`);
    }
    inFlight++;
    let y: Float32Array, rows: number;
    try {
      const body = raw ? await readBody(req, maxBodyBytes) : await readBody(req, maxJsonBytes, nestingCheck(3));
      const input = raw ? parseRawInputs(body, inF, maxRows) : parseJsonInputs(body, inF, maxRows);
      rows = input.rows;
      y = await model.predictRows(input.x, rows);
    } finally {
      inFlight--;
      trimWhenIdle();
    }
    stats.predictions++;
    stats.rows += rows;
    const headers: http.OutgoingHttpHeaders = draining ? { Connection: 'close' } : {};
    if (raw) {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': y.byteLength, 'X-Shape': `${rows},${outF}`, ...headers });
      res.end(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
    } else {
      const text = jsonOutputs(y, rows, outF);
      res.writeHead(200, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), ...headers });
      res.end(text);
    }
  }

  const server = http.createServer({
    requestTimeout: requestTimeoutMs, headersTimeout: headersTimeoutMs, keepAliveTimeout: keepAliveTimeoutMs,
    // Node checks these timeouts only every connectionsCheckingInterval (30 s by default), so a 1.5 s limit
    // answered 408 at 30 s: check at a quarter of the shortest.
    connectionsCheckingInterval: Math.max(25, Math.floor(headersTimeoutMs / 4)),
  }, (req, res) => {
    stats.requests++;
    const url = req.url ?? '/';
    const path = url.split('?')[0];
    const route = (method: string, allow: string): boolean => {
      if (req.method === method) return true;
      throw Object.assign(new HttpError(405, 'E_METHOD', `${req.method} ${path}: use ${allow}`), { allow });
    };
    (async () => {
      if (path === '/predict') {
        route('POST', 'POST');
        if (draining) throw new HttpError(503, 'E_SHUTTING_DOWN', 'the server is shutting down');
        await predict(req, res);
      } else if (path === '/health') {
        route('GET', 'GET');
        send(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ok' }, draining ? { Connection: 'close' } : {});
      } else if (path === '/info') {
        route('GET', 'GET');
        send(res, 200, {
          model: publicInfo,
          server: {
            maxBodyBytes, maxJsonBytes, maxRows, maxConnections, maxInFlight, requestTimeoutMs, headersTimeoutMs, keepAliveTimeoutMs, idleTrimMs,
            uptimeSeconds: (Date.now() - started) / 1000, draining, inFlight, connections: open,
          },
          stats: { ...stats, batches: model.batchStats },
        });
      } else {
        throw new HttpError(404, 'E_NOT_FOUND', `${path}: not found (routes: POST /predict, GET /health, GET /info)`);
      }
    })().catch((e) => fail(res, e));
  });
  // Past maxConnections a new connection gets a 503 and is closed (Node's own maxConnections would drop it
  // without a word).
  let open = 0;
  server.on('connection', (socket) => {
    open++;
    socket.once('close', () => open--);
    if (open <= maxConnections) return;
    stats.rejectedFull++;
    const body = JSON.stringify({ error: { code: 'E_BUSY', message: `${maxConnections} connections open, the limit: retry later` } });
    socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`);
    socket.destroySoon();
  });
  // Malformed HTTP (bad request line, header overflow): a 400 and the connection closed, as Node does by default,
  // but with our JSON body.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (err.code === 'ECONNRESET')) { socket.destroy(); return; }
    stats.clientErrors++;
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const body = JSON.stringify({ error: { code: 'E_HTTP', message: `malformed request (${err.code ?? 'parse error'})` } });
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const running: RunningServer = {
    url: `http://${urlHost}:${addr.port}`, host: addr.address, port: addr.port, server, stats,
    close: async ({ graceMs = 10_000 } = {}) => {
      if (draining) return closed;
      draining = true;
      log('shutting down: no new connections, finishing in-flight requests');
      const timer = setTimeout(() => { log('grace period over: closing the remaining connections'); server.closeAllConnections(); }, graceMs);
      timer.unref();
      server.close();
      server.closeIdleConnections();
      await closed;
      clearTimeout(timer);
      if (trimTimer) clearTimeout(trimTimer);
      await model.drained();
      log('stopped');
    },
  };
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  // Keep-alive connections that become idle while draining are closed as soon as their response is out.
  server.on('request', (_req, res) => res.on('finish', () => { if (draining) server.closeIdleConnections(); }));
  return running;
}
