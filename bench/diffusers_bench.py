"""diffusers' own ControlNet-XS pipeline on a benchmark checkpoint folder, for the rows next to ours.

Spawned by `npm run bench -- --diffusers` (bench/bench.ts), never by the tests. It times what bench.ts times:
the fused UNet + adapter step at batch 2 (classifier-free guidance), control on, `--size`² latents (one warm-up,
then the median of `--repeats`), and a whole `--steps` generation of a `--pixels` px control image. Inputs have
the shapes of the real ones (speed does not depend on their values). Prints one JSON line last.

    python3 bench/diffusers_bench.py --model bench/out/sdxl-random --pipeline sdxl --device cuda --dtype float16
"""

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np
import PIL.Image
import torch
import diffusers


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a pipeline folder (model_index.json with a controlnet/ adapter)")
    p.add_argument("--pipeline", choices=["sd21", "sdxl"], required=True)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float16")
    p.add_argument("--size", type=int, default=None, help="latent size of the step (default: the native 64 / 128)")
    p.add_argument("--pixels", type=int, default=None, help="size of the full generation (default: 512 / 1024)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-full", action="store_true")
    a = p.parse_args()
    if a.dtype == "float16" and a.device == "cpu":
        p.error("--dtype float16 needs --device cuda (torch's CPU kernels are fp32)")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    native = 1024 if a.pipeline == "sdxl" else 512
    a.pixels = a.pixels or native
    a.size = a.size or native // 8
    return a


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device, fn):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main():
    a = parse_args()
    dtype = torch.float16 if a.dtype == "float16" else torch.float32
    cls = diffusers.StableDiffusionXLControlNetXSPipeline if a.pipeline == "sdxl" else diffusers.StableDiffusionControlNetXSPipeline
    # the pipeline's __init__ fuses unet/ and controlnet/ with UNetControlNetXSModel.from_unet, as ours does
    pipe = cls.from_pretrained(a.model, torch_dtype=dtype).to(a.device)
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet
    cfg = unet.config

    # one CFG step's inputs: [2, 4, s, s] latents, [2, 77, D] text states, [2, 3, 8s, 8s] control image
    g = torch.Generator("cpu").manual_seed(1)
    s = a.size
    rand = lambda *shape: torch.randn(*shape, generator=g).to(a.device, dtype)
    cross = cfg.cross_attention_dim if isinstance(cfg.cross_attention_dim, int) else cfg.cross_attention_dim[0]
    kwargs = dict(
        sample=rand(2, 4, s, s),
        timestep=torch.tensor(500, device=a.device),
        encoder_hidden_states=rand(2, 77, cross),
        controlnet_cond=rand(2, 3, 8 * s, 8 * s),
        conditioning_scale=1.0,
        apply_control=True,
    )
    if a.pipeline == "sdxl":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        px = 8 * s
        time_ids = torch.tensor([[px, px, 0, 0, px, px]] * 2, device=a.device, dtype=dtype)
        kwargs["added_cond_kwargs"] = {"text_embeds": rand(2, pooled), "time_ids": time_ids}

    with torch.inference_mode():
        step = lambda: unet(**kwargs)
        timed(a.device, step)  # warm-up, as bench.ts does
        step_seconds = statistics.median_low([timed(a.device, step) for _ in range(a.repeats)])
        print(f"diffusers: step b2 {s}x{s} control on: {step_seconds:.3f} s", file=sys.stderr)

        full_seconds = None
        if not a.skip_full:
            n = a.pixels * a.pixels * 3
            pattern = (np.arange(n, dtype=np.int64) * 7 & 255).astype(np.uint8).reshape(a.pixels, a.pixels, 3)
            image = PIL.Image.fromarray(pattern)
            run = lambda: pipe(
                "a photo of a bird",
                image=image,
                num_inference_steps=a.steps,
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="np",
            )
            # after the step timings, so kernels are warm (bench.ts runs its generation in a fresh process)
            full_seconds = timed(a.device, run)
            print(f"diffusers: full generation {a.pixels} px, {a.steps} steps: {full_seconds:.2f} s", file=sys.stderr)

    result = {
        "device": a.device,
        "dtype": a.dtype,
        "versions": f"{diffusers.__version__} / torch {torch.__version__}",
        "stepSeconds": step_seconds,
        "fullSeconds": full_seconds,
        "torchPeakGB": torch.cuda.max_memory_allocated() / 1e9 if a.device == "cuda" else None,
        "peakRssGB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
