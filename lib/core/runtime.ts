/**
 * What this process runs on: the libtorch build, the native binary, CUDA devices and memory, and
 * the embedded demo model.
 */
import * as path from 'path';
import { addon, availablePrebuilds, nativeBinary, loadedLibtorch, type NativeBinaryInfo, type LoadedLibtorch } from '../binding';
import { invalidParameterError } from '../errors';

/** The libtorch this build runs on, and what it sees. */
export function runtimeInfo(): { libtorchVersion: string; cudaCompiled: boolean; cudaDeviceCount: number; cudaDeviceName: string; threads: number; workerThreads: number } {
  return addon().runtimeInfo();
}

/**
 * The native binary in use and the libtorch this process runs on: `binary` says whether a
 * prebuilt binary (and for which libtorch it was built) or a build from source was loaded;
 * `libtorch` is the libtorch library actually loaded (its file, version, CUDA, C++ ABI; null
 * where /proc/self/maps cannot be read); `prebuilds` lists the package's prebuilt binaries (one line).
 */
export function nativeInfo(): { binary: NativeBinaryInfo; libtorch: LoadedLibtorch | null; prebuilds: string } {
  return { binary: nativeBinary(), libtorch: loadedLibtorch(), prebuilds: availablePrebuilds() };
}

/**
 * Whether fast mode's fused CUDA kernels (compiled at run time with NVRTC) run on CUDA device
 * `deviceIndex`; `reason` says why not (no CUDA, NVRTC missing, HDLM_FUSED_KERNELS=0, …). Fast
 * mode then runs the same computation from ATen kernels. Compiles the kernels on first use.
 */
export function fusedKernelStatus(deviceIndex = 0): { available: boolean; reason: string } {
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0) {
    throw invalidParameterError('deviceIndex', 'a non-negative integer', deviceIndex);
  }
  return addon().fusedKernelStatus(deviceIndex);
}

/**
 * Bytes the CUDA caching allocator of device `deviceIndex` holds for live tensors (`allocated`),
 * at most since the last reset (`peakAllocated`; `resetPeak: true` starts a new window) and in all
 * (`reserved`, cache included); null without CUDA. For leak checks: `allocated` returns to its
 * earlier value once the models created since are disposed and their calls ended.
 */
export function cudaMemory(deviceIndex = 0, resetPeak = false): { allocated: number; peakAllocated: number; reserved: number } | null {
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0) {
    throw invalidParameterError('deviceIndex', 'a non-negative integer', deviceIndex);
  }
  if (typeof resetPeak !== 'boolean') throw invalidParameterError('resetPeak', 'a boolean', resetPeak);
  return addon().cudaMemory(deviceIndex, resetPeak);
}

/** Path of the embedded demo checkpoint (a small HDLM trained on the Brown corpus; writes English-like text offline). */
export const DEMO_MODEL_PATH: string = path.join(__dirname, '..', '..', 'models', 'brown-epsilon');
