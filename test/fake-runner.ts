/**
 * A GenerationRunner without a model, for the queue tests: each step waits `stepMs`, reports progress with
 * a one-byte "preview", and stops between steps when its signal fires; the "PNGs" are bytes derived from
 * the request alone (prompt, seed, image index), so every run of a request gives the same bytes and a test
 * can say which bytes each job must have. A prompt starting with "fail" makes the run throw.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { GenerationOutput, GenerationRequest, GenerationRunner, RunOptions } from '../src/server/jobs.js';

export function fakeImage(request: GenerationRequest, k: number): Uint8Array {
  return new TextEncoder().encode(`fake png · ${request.prompt} · seed ${BigInt(request.seed) + BigInt(k)}`);
}

export class FakeRunner implements GenerationRunner {
  /** Prompts of the runs started, in order. */
  readonly started: string[] = [];

  constructor(private readonly stepMs = 0) {}

  async run(request: GenerationRequest, options: RunOptions = {}): Promise<GenerationOutput> {
    this.started.push(request.prompt);
    for (let step = 1; step <= request.steps; step++) {
      if (this.stepMs > 0) await sleep(this.stepMs);
      if (options.signal?.aborted) throw new DOMException('the generation was stopped', 'AbortError');
      if (request.prompt.startsWith('fail')) throw new Error(`bad luck at step ${step}\n    at somewhere (stack line)`);
      options.onProgress?.({ step, total: request.steps, previewPng: new Uint8Array([step]) });
    }
    const images = Array.from({ length: request.numImages }, (_, k) => fakeImage(request, k));
    return {
      images,
      info: {
        parameters: images.map(() => `${request.prompt}\nSteps: ${request.steps}`),
        seeds: images.map((_, k) => String(BigInt(request.seed) + BigInt(k))),
        width: request.width ?? 64,
        height: request.height ?? 64,
        sampler: 'DDIM',
        device: 'cpu',
        nsfwContentDetected: null,
        seconds: 0.01,
      },
    };
  }
}

export function fakeRequest(prompt: string, extra: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    prompt,
    imageBase64: 'AA==',
    steps: 2,
    guidanceScale: 7.5,
    controlScale: 1,
    controlStart: 0,
    controlEnd: 1,
    seed: '7',
    numImages: 1,
    ...extra,
  };
}
