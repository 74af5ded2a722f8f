/**
 * Devices other than the CPU plug in here. lib/cuda.ts registers the 'cuda' backend when the addon was built
 * with CUDA; op files (lib/mask.ts, lib/gemm.ts, …) send a tensor that lives on a device to that device's op.
 * Nothing here touches a GPU until an op or a transfer asks for it.
 */
import { NmSparseError } from './errors.js';

export type Device = 'cpu' | 'cuda';

/** Device memory held by a tensor (a native DeviceBuffer handle). */
export interface DeviceStorage {
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

/**
 * A device backend: transfers plus one entry per op family. Op entries take and return lib objects (Tensor,
 * SparseTensor); they are typed loosely here to keep this file free of imports from the op files.
 */
export interface DeviceBackend {
  name: Device;
  /** Why the device cannot be used, or null when it can. Cheap after the first call. */
  unavailableReason(): string | null;
  upload(src: ArrayBufferView, dtypeCode: number): DeviceStorage;
  download(storage: DeviceStorage, dst: ArrayBufferView): void;
  downloadAsync(storage: DeviceStorage, dst: ArrayBufferView): Promise<void>;
  alloc(bytes: number): DeviceStorage;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ops: Record<string, (...args: any[]) => any>;
}

const backends = new Map<Device, DeviceBackend>();

export function registerBackend(b: DeviceBackend): void {
  backends.set(b.name, b);
}

export function isDevice(d: unknown): d is Device {
  return d === 'cpu' || d === 'cuda';
}

/** The backend of `device`, ready to use, or an E_DEVICE error saying exactly why it is not. */
export function backendFor(device: Device, arg = 'device'): DeviceBackend {
  const b = backends.get(device);
  if (!b) throw new NmSparseError('E_DEVICE', `${arg}: '${device}' is not available: this build of nmsparse has no ${device} backend`);
  const why = b.unavailableReason();
  if (why) throw new NmSparseError('E_DEVICE', `${arg}: '${device}' is not available: ${why}`);
  return b;
}

/** The device op `name`, or E_UNSUPPORTED when the device has none. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function deviceOp(device: Device, name: string): (...args: any[]) => any {
  const op = backendFor(device).ops[name];
  if (!op) throw new NmSparseError('E_UNSUPPORTED', `${name}: not implemented on '${device}' tensors; move them with .to('cpu')`);
  return op;
}
