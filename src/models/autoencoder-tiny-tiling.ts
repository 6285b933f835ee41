/**
 * AutoencoderTiny's own tiling (diffusers' `_tiled_decode` / `_tiled_encode`, not AutoencoderKL's):
 * fixed tiles of 512 px (64 latents), each written into the output over what earlier tiles left,
 * through a linear ramp across the overlap. All arithmetic in float32 as torch does it.
 */
import { InputError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { cropNCHW } from './vae-tiling.js';

/** diffusers' AutoencoderTiny tiling constants (attributes set in its `__init__`). */
export interface TinyTiling {
  /** `2 ** out_channels`: diffusers' size ratio between image and latents (8 only because out_channels is 3). */
  spatialScaleFactor: number;
  /** Image tile side: 512. */
  tileSampleMinSize: number;
  /** 0.125. */
  tileOverlapFactor: number;
}

/** torch `arange(n) / d`, clamped to [0, 1], in float32: the blend ramp across the overlap. */
function ramp(n: number, d: number): Float32Array {
  const r = new Float32Array(n);
  for (let k = 0; k < n; k++) r[k] = Math.min(1, Math.max(0, Math.fround(k / d)));
  return r;
}

/** Python's `range(0, n, step)`. */
function starts(n: number, step: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i += step) out.push(i);
  return out;
}

/**
 * `out[..., y0:, x0:] = m·tile + (1 − m)·out` over the tile's extent, with m = mi[r]·mj[c]
 * (each ramp, or ones for the first row / column of tiles). out [B, C, H, W], tile [B, C, h, w].
 */
function blendInto(out: Tensor<'float32'>, tile: Tensor<'float32'>, y0: number, x0: number, mi: Float32Array | null, mj: Float32Array | null): void {
  const [batch, channels, H, W] = out.dims as [number, number, number, number];
  const [, , h, w] = tile.dims as [number, number, number, number];
  const o = out.data;
  const t = tile.data;
  for (let bc = 0; bc < batch * channels; bc++) {
    for (let r = 0; r < h; r++) {
      const a = mi === null ? 1 : mi[r]!;
      for (let c = 0; c < w; c++) {
        const m = Math.fround(a * (mj === null ? 1 : mj[c]!));
        const oi = (bc * H + y0 + r) * W + x0 + c;
        const ti = (bc * h + r) * w + c;
        o[oi] = Math.fround(Math.fround(m * t[ti]!) + Math.fround(Math.fround(1 - m) * o[oi]!));
      }
    }
  }
}

/**
 * diffusers' `_tiled_decode`: latent tiles of `tileSampleMinSize / sf` (64), stepping by the tile
 * less an eighth; each decoded tile is blended over a 1/8-tile ramp (64 px) at its top and left
 * edges. Its output buffer has 3 channels and `sf`× the latent size, so a decoder that does not
 * upsample by `sf` or makes other than 3 channels fails in diffusers; here that is an InputError.
 * latents [B, C, h, w] → image [B, 3, h·sf, w·sf]
 */
export async function tinyTiledDecode(
  x: Tensor<'float32'>,
  t: TinyTiling,
  decoder: { upscale: number; outChannels: number },
  decode: (tile: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
): Promise<Tensor<'float32'>> {
  const sf = t.spatialScaleFactor;
  if (decoder.upscale !== sf || decoder.outChannels !== 3) {
    throw new InputError(
      `tiled decode needs a decoder that upsamples by ${sf} (2^out_channels) into 3 channels, as diffusers' AutoencoderTiny tiling assumes; ` +
        `this one upsamples by ${decoder.upscale} into ${decoder.outChannels}`,
    );
  }
  const [batch, , H, W] = x.dims as [number, number, number, number];
  const tile = Math.floor(t.tileSampleMinSize / sf);
  const blend = Math.trunc(tile * t.tileOverlapFactor);
  const traverse = tile - blend;
  const mask = ramp(tile * sf, blend * sf - 1); // [tile·sf] over output pixels
  const out = new Tensor('float32', new Float32Array(batch * 3 * H * sf * W * sf), [batch, 3, H * sf, W * sf]);
  for (const i of starts(H, traverse)) {
    for (const j of starts(W, traverse)) {
      const decoded = await decode(cropNCHW(x, i, Math.min(i + tile, H), j, Math.min(j + tile, W))); // [B, 3, ≤512, ≤512]
      blendInto(out, decoded, i * sf, j * sf, i === 0 ? null : mask, j === 0 ? null : mask);
    }
  }
  return out;
}

/**
 * diffusers' `_tiled_encode`: image tiles of `tileSampleMinSize` (512) px stepping by 448, each
 * encoded tile blended over an 8-latent ramp. Its output buffer has 4 channels and ⌊H/sf⌋ × ⌊W/sf⌋
 * latents, so other latent widths, encoders that do not downsample by `sf`, and image sides whose
 * last tile is not a multiple of `sf` fail in diffusers; here they are InputErrors.
 * image [B, 3, H, W] → latents [B, 4, ⌊H/sf⌋, ⌊W/sf⌋]
 */
export async function tinyTiledEncode(
  x: Tensor<'float32'>,
  t: TinyTiling,
  encoder: { latentChannels: number; downscale: number },
  encode: (tile: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
): Promise<Tensor<'float32'>> {
  const sf = t.spatialScaleFactor;
  if (encoder.latentChannels !== 4 || encoder.downscale !== sf) {
    throw new InputError(
      `tiled encode needs an encoder that downsamples by ${sf} (2^out_channels) into 4 latent channels, as diffusers' AutoencoderTiny tiling assumes; ` +
        `this one downsamples by ${encoder.downscale} into ${encoder.latentChannels}`,
    );
  }
  const [batch, , H, W] = x.dims as [number, number, number, number];
  const tile = t.tileSampleMinSize;
  const blend = Math.trunc(tile * t.tileOverlapFactor);
  const traverse = tile - blend;
  const mask = ramp(tile / sf, blend / sf - 1); // [tile/sf] over latents
  const [h, w] = [Math.floor(H / sf), Math.floor(W / sf)];
  const out = new Tensor('float32', new Float32Array(batch * 4 * h * w), [batch, 4, h, w]);
  // An encoded tile of n px has ⌈n/sf⌉ rows (stride-2 convs round up); its slot in the output ⌊…/sf⌋.
  const fits = (n0: number, n: number) => Math.ceil((Math.min(n0 + tile, n) - n0) / sf) === Math.min(Math.floor((n0 + tile) / sf), Math.floor(n / sf)) - Math.floor(n0 / sf);
  for (const i of starts(H, traverse)) {
    for (const j of starts(W, traverse)) {
      if (!fits(i, H) || !fits(j, W)) {
        throw new InputError(
          `tiled encode of a ${H}×${W} image: the tile at (${i}, ${j}) is not a multiple of ${sf} px, so it encodes to more latents than its place ` +
            `in diffusers' output (which fails there too); use sides whose last tile is a multiple of ${sf}`,
        );
      }
      const encoded = await encode(cropNCHW(x, i, Math.min(i + tile, H), j, Math.min(j + tile, W))); // [B, 4, ≤64, ≤64]
      blendInto(out, encoded, Math.floor(i / sf), Math.floor(j / sf), i === 0 ? null : mask, j === 0 ? null : mask);
    }
  }
  return out;
}
