/**
 * `nmsparse serve --model FILE [--port 8080] [--host 127.0.0.1] ...`: serves a checkpoint over HTTP until SIGINT or
 * SIGTERM, then shuts down gracefully (stops accepting, finishes in-flight requests, exits 0).
 * Also runs on its own: `node dist/cli/serve.js --model FILE` (what `bench serve` starts).
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NmSparseError } from '../errors.js';
import { InferenceModel, type InferenceOptions } from '../serve/model.js';
import { isLoopback, startServer, type RunningServer } from '../serve/server.js';
import type { ArchSpec } from '../io/model-file.js';
import { UsageError, failure, parseFlags } from './usage.js';

export const SERVE_USAGE = `Usage: nmsparse serve --model FILE [options]

Serves a safetensors checkpoint: POST /predict (JSON {"inputs": [[...]]} or raw float32), GET /health, GET /info.

Options:
  --model FILE          model file (.safetensors) written by nmsparse, or a PyTorch state_dict with --arch
  --port P              port (default 8080; 0 picks a free one)
  --host H              interface (default 127.0.0.1: loopback only; anything else is reachable from outside)
  --device D            cpu (default) or cuda
  --max-batch N         most rows coalesced into one batch (default 64)
  --max-delay-ms T      how long a request that finds the model idle waits for others to batch with
                        (default 0: it runs at once; requests that queue behind a batch run together)
  --max-body-bytes B    largest request body (default 8388608); larger gets 413
  --max-json-bytes B    largest JSON body (default 2097152: it is parsed on the event loop); larger gets 413
  --max-rows N          most rows in one request (default 1024)
  --max-connections N   most open connections (default 512); more get 503 and are closed
  --max-in-flight N     most /predict requests received or computed at once (default 64); more get 503
  --request-timeout-ms T   time to receive a whole request (default 30000); slower gets 408
  --headers-timeout-ms T   time to receive the headers (default min(10000, request timeout)); slower gets 408
  --keep-alive-timeout-ms T   how long an idle keep-alive connection stays open (default 5000)
  --idle-trim-ms T      after /predict has been quiet this long, give the memory a burst left free back to
                        the system (default 6000; 0: never; under node --expose-gc, collect garbage first)
  --arch A              architecture for a file without nmsparse.arch: 'mlp' (a file that records an MLP
                        keeps its own) or a JSON file
  --pattern N:M         for a file without N:M metadata: run the weights that are N:M under this pattern as
                        sparse (default: each weight runs with the sparsest of 1:8 1:4 2:8 3:8 2:4 4:8 it is)
  --dense               run every layer dense (to compare with the sparse path)
  --inputs-transformed  clients send inputs already standardised: do not apply the file's nmsparse.input
                        (by default it is applied, so clients send raw values, e.g. MNIST pixels in [0, 1])
  -h, --help            this text
`;

interface Process {
  on(signal: 'SIGINT' | 'SIGTERM', fn: () => void): unknown;
  off(signal: 'SIGINT' | 'SIGTERM', fn: () => void): unknown;
}

export interface ServeDeps {
  /** Where SIGINT/SIGTERM come from (default: process). */
  signals?: Process;
  /** How to exit (default: process.exit). */
  exit?: (code: number) => void;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

const optionalInt = (v: string | undefined, name: string): number | undefined => (v === undefined ? undefined : intOpt(v, name, 0));

function intOpt(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`--${name}: got ${JSON.stringify(v)}, expected a non-negative integer`);
  return n;
}

/** Parses argv, loads the model and starts serving; resolves to the running server (signals handled). */
export async function runServe(argv: string[], deps: ServeDeps = {}): Promise<RunningServer | null> {
  const out = deps.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = deps.err ?? ((l: string) => process.stderr.write(l + '\n'));
  const values = parseFlags(argv, {
    model: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, device: { type: 'string' },
    'max-batch': { type: 'string' }, 'max-delay-ms': { type: 'string' }, 'max-body-bytes': { type: 'string' },
    'max-rows': { type: 'string' }, 'max-json-bytes': { type: 'string' }, 'max-connections': { type: 'string' },
    'max-in-flight': { type: 'string' }, 'request-timeout-ms': { type: 'string' }, 'headers-timeout-ms': { type: 'string' },
    'keep-alive-timeout-ms': { type: 'string' }, 'idle-trim-ms': { type: 'string' }, arch: { type: 'string' }, pattern: { type: 'string' }, dense: { type: 'boolean' },
    'inputs-transformed': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out(SERVE_USAGE);
    return null;
  }
  if (!values.model) throw new UsageError('--model: required (a .safetensors checkpoint)');
  const host = values.host ?? '127.0.0.1';
  if (!isLoopback(host)) err(`warning: --host ${host} is not loopback: the server is reachable from other machines and has no authentication`);
  let arch: InferenceOptions['arch'];
  if (values.arch !== undefined) {
    if (values.arch === 'mlp') arch = 'mlp';
    else {
      try {
        arch = JSON.parse(readFileSync(values.arch, 'utf8')) as ArchSpec;
      } catch (e) {
        throw new NmSparseError('E_IO', `--arch ${values.arch}: cannot read a JSON architecture: ${(e as Error).message}`);
      }
    }
  }
  const model = await InferenceModel.load(values.model, {
    device: (values.device ?? 'cpu') as InferenceOptions['device'],
    maxBatch: intOpt(values['max-batch'], 'max-batch', 64),
    maxDelayMs: values['max-delay-ms'] === undefined ? 0 : Number(values['max-delay-ms']),
    arch,
    pattern: values.pattern,
    sparse: !values.dense,
    inputTransform: !values['inputs-transformed'],
  });
  const running = await startServer(model, {
    port: intOpt(values.port, 'port', 8080),
    host,
    maxBodyBytes: intOpt(values['max-body-bytes'], 'max-body-bytes', 8 << 20),
    maxRows: intOpt(values['max-rows'], 'max-rows', 1024),
    // The rest default in startServer.
    maxJsonBytes: optionalInt(values['max-json-bytes'], 'max-json-bytes'),
    maxConnections: optionalInt(values['max-connections'], 'max-connections'),
    maxInFlight: optionalInt(values['max-in-flight'], 'max-in-flight'),
    requestTimeoutMs: optionalInt(values['request-timeout-ms'], 'request-timeout-ms'),
    headersTimeoutMs: optionalInt(values['headers-timeout-ms'], 'headers-timeout-ms'),
    keepAliveTimeoutMs: optionalInt(values['keep-alive-timeout-ms'], 'keep-alive-timeout-ms'),
    idleTrimMs: optionalInt(values['idle-trim-ms'], 'idle-trim-ms'),
    log: (l) => err(`[serve] ${l}`),
  });
  const info = model.info();
  const layers = info.layers.filter((l) => l.weight !== undefined).map((l) => `${l.in}→${l.out} ${l.weight}${l.patternFrom === 'detected' ? ' (detected)' : ''}`).join(', ');
  const input = info.input ? `; inputs standardised (x − ${info.input.mean}) / ${info.input.std}` : '';
  out(`nmsparse serve: ${values.model} (${info.inputs} → ${info.outputs}; ${layers}${input}) on ${info.device}`);
  out(`listening on ${running.url}`);

  const signals = deps.signals ?? process;
  const exit = deps.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const onSignal = () => {
    if (stopping) {
      err('[serve] second signal: exiting now');
      exit(1);
      return;
    }
    stopping = true;
    running.close().then(
      () => model.dispose().then(() => { signals.off('SIGINT', onSignal); signals.off('SIGTERM', onSignal); exit(0); }),
      (e) => { err(`[serve] shutdown failed: ${(e as Error).message}`); exit(1); },
    );
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);
  return running;
}

/**
 * `nmsparse serve ...` (dispatched by lib/cli/index.ts, or run directly). Errors print one line; exit code 2 for
 * a bad command line, 1 for a failure (a model that does not load, a port in use).
 */
export async function serveCommand(argv: string[]): Promise<void> {
  try {
    await runServe(argv);
  } catch (e) {
    const f = failure('serve', e);
    process.stderr.write(f.line);
    process.exitCode = f.exitCode;
  }
}

// Run directly: node dist/cli/serve.js --model FILE ...
const self = fileURLToPath(import.meta.url);
if (process.argv[1] && (() => { try { return realpathSync(process.argv[1]) === realpathSync(self); } catch { return false; } })())
  void serveCommand(process.argv.slice(2));
