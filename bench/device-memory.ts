/**
 * Peak device memory while a benchmark runs, where the platform can tell: CUDA through `nvidia-smi`
 * (used memory of GPU 0 sampled every 100 ms, minus what was in use when sampling started). onnxruntime-node
 * exposes no allocator statistics, and WebGPU none at all, so other devices report null.
 */
import { execFile } from 'node:child_process';

export interface DeviceMemorySampler {
  /** Stop sampling: the peak increase in GB, or null where it cannot be measured. */
  stop(): Promise<number | null>;
}

function usedMiB(): Promise<number | null> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', '0'], { timeout: 5000 }, (err, stdout) => {
      const v = Number(stdout.trim().split('\n')[0]);
      resolve(err || !Number.isFinite(v) ? null : v);
    });
  });
}

/**
 * The GPU a row was measured on, for the README's table: nvidia-smi's name of GPU 0 on CUDA; elsewhere the
 * provider that ran (neither onnxruntime-node nor Dawn tell which adapter WebGPU picked).
 */
export function deviceName(provider: string): Promise<string> {
  if (provider !== 'cuda') return Promise.resolve(provider);
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader', '-i', '0'], { timeout: 5000 }, (err, stdout) => {
      const name = stdout.trim().split('\n')[0];
      resolve(err || !name ? 'cuda' : name);
    });
  });
}

export async function sampleDeviceMemory(device: string): Promise<DeviceMemorySampler> {
  const base = device === 'cuda' ? await usedMiB() : null;
  if (base === null) return { stop: async () => null };
  let peak = base;
  let pending: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    pending = pending.then(async () => {
      const v = await usedMiB();
      if (v !== null) peak = Math.max(peak, v);
    });
  }, 100);
  return {
    async stop() {
      clearInterval(timer);
      await pending;
      const last = await usedMiB();
      return (Math.max(peak, last ?? peak) - base) * 1.048576e-3; // MiB → GB
    },
  };
}
