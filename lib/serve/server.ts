/**
 * The HTTP front of an InferenceModel, on Node's own http module (no framework: four routes do not need one).
 *
 *   POST /predict   application/json {"inputs": [[...], ...]}  →  {"outputs": [[...], ...]}
 *                   application/octet-stream: rows × inputs float32 little-endian  →  rows × outputs float32,
 *                   with the header `X-Shape: rows,outputs`
 *   GET  /health    {"status": "ok"} (503 {"status": "draining"} while shutting down)
 *   GET  /info      the model (layers, sizes, pattern per layer), the limits and counters
 *
 * Every error is JSON {"error": {"code", "message"}} with a 4xx status for the client's mistakes (400 malformed,
 * 404, 405, 411, 413 too large, 415 content type, 503 shutting down) and 500 for ours; the server keeps serving.
 * close() shuts down gracefully: it stops accepting, lets in-flight requests finish (answering them with
 * `Connection: close`), closes idle keep-alive connections, then resolves.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
  /** Most rows in one request (default 1024); more → 413. */
  maxRows?: number;
  /** Time allowed to receive a whole request (default 30 s). */
  requestTimeoutMs?: number;
  /** Receives one line per notable event (start, shutdown, 5xx errors). Default: nothing. */
  log?: (line: string) => void;
}

export interface ServerStats {
  requests: number;
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
const JSON_LIKE = new Set(['application/json', '', 'text/plain', 'application/x-www-form-urlencoded']);

function send(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Reads the body, enforcing the size limit as bytes arrive (Content-Length may be absent or lie). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
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
      chunks.push(c);
    });
    req.on('end', () => { if (!failed) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)); });
    req.on('error', (e) => { if (!failed) { failed = true; reject(e); } });
  });
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
  return { x, rows };
}

function jsonOutputs(y: Float32Array, rows: number, outF: number): string {
  const parts: string[] = new Array(rows);
  for (let r = 0; r < rows; r++) parts[r] = '[' + Array.prototype.join.call(y.subarray(r * outF, (r + 1) * outF), ',') + ']';
  return '{"outputs":[' + parts.join(',') + ']}';
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
  const maxRows = checkInt(opts.maxRows ?? 1024, 'options.maxRows', 1, 2 ** 24);
  const requestTimeoutMs = checkInt(opts.requestTimeoutMs ?? 30_000, 'options.requestTimeoutMs', 1, 3_600_000);
  const log = opts.log ?? (() => undefined);
  const inF = model.inFeatures, outF = model.outFeatures;
  const stats: ServerStats = { requests: 0, predictions: 0, rows: 0, clientErrors: 0, serverErrors: 0 };
  let draining = false;
  const started = Date.now();

  const fail = (res: http.ServerResponse, e: unknown): void => {
    if (res.headersSent) { res.destroy(); return; }
    let status = 500, code = 'E_INTERNAL', message = 'internal error';
    if (e instanceof HttpError) ({ status, code, message } = e);
    else if (e instanceof NmSparseError && (e.code === 'E_SHAPE' || e.code === 'E_VALUE')) ({ status, code, message } = { status: 400, code: e.code, message: e.message });
    else log(`error: ${(e as Error)?.stack ?? String(e)}`);
    if (status >= 500) stats.serverErrors++;
    else stats.clientErrors++;
    // After a 413 the rest of a large body is not read: close the connection rather than drain it.
    const headers: http.OutgoingHttpHeaders = status === 413 || draining ? { Connection: 'close' } : {};
    if (status === 405) headers.Allow = (e as HttpError & { allow?: string }).allow ?? 'GET';
    send(res, status, { error: { code, message } }, headers);
  };

  async function predict(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const type = mediaType(req);
    const raw = type === 'application/octet-stream';
    // JSON also under the types plain clients send by default (curl -d: x-www-form-urlencoded).
    if (!raw && !JSON_LIKE.has(type))
      throw new HttpError(415, 'E_CONTENT_TYPE', `Content-Type ${JSON.stringify(type)} is not supported: use application/json or application/octet-stream`);
    const body = await readBody(req, maxBodyBytes);
    const { x, rows } = raw ? parseRawInputs(body, inF, maxRows) : parseJsonInputs(body, inF, maxRows);
    const y = await model.predictRows(x, rows);
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

  const server = http.createServer({ requestTimeout: requestTimeoutMs, headersTimeout: Math.min(requestTimeoutMs, 10_000), keepAliveTimeout: 5_000 }, (req, res) => {
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
          model: model.info(),
          server: { maxBodyBytes, maxRows, uptimeSeconds: (Date.now() - started) / 1000, draining },
          stats: { ...stats, batches: model.batchStats },
        });
      } else {
        throw new HttpError(404, 'E_NOT_FOUND', `${path}: not found (routes: POST /predict, GET /health, GET /info)`);
      }
    })().catch((e) => fail(res, e));
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
      await model.drained();
      log('stopped');
    },
  };
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  // Keep-alive connections that become idle while draining are closed as soon as their response is out.
  server.on('request', (_req, res) => res.on('finish', () => { if (draining) server.closeIdleConnections(); }));
  return running;
}
