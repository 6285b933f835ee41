/**
 * A control image's format and size from its first bytes, without decoding it: requests are refused
 * (not decoded) when they are neither PNG nor JPEG, or when their pixel count would take too much memory.
 */

export interface ImageHeader {
  format: 'png' | 'jpeg';
  width: number;
  height: number;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** null: not a PNG or JPEG (by its magic bytes); a string: one of them, but its header is unreadable (why). */
export function readImageHeader(bytes: Uint8Array): ImageHeader | null | string {
  if (PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return pngHeader(bytes);
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return jpegHeader(bytes);
  return null;
}

/** PNG: IHDR is the first chunk; width and height are its first two big-endian u32s (bytes 16–23). */
function pngHeader(bytes: Uint8Array): ImageHeader | string {
  if (bytes.length < 24 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') return 'a PNG whose first chunk is not IHDR';
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { format: 'png', width: view.getUint32(16), height: view.getUint32(20) };
}

/** Start-of-frame markers (SOF0–SOF15 but DHT C4, JPG C8, DAC CC): height and width follow the precision byte. */
const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/** JPEG: walk the marker segments (each 0xFF, type, big-endian length) up to the frame header. */
function jpegHeader(bytes: Uint8Array): ImageHeader | string {
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return `a JPEG with a broken segment at byte ${at}`;
    const type = bytes[at + 1]!;
    if (type === 0xff) {
      at += 1; // fill byte
      continue;
    }
    // standalone markers have no length
    if (type === 0x01 || (type >= 0xd0 && type <= 0xd7)) {
      at += 2;
      continue;
    }
    const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    if (SOF.has(type)) {
      if (at + 9 > bytes.length) break;
      return { format: 'jpeg', height: (bytes[at + 5]! << 8) | bytes[at + 6]!, width: (bytes[at + 7]! << 8) | bytes[at + 8]! };
    }
    if (type === 0xda || type === 0xd9) return 'a JPEG without a frame header before its image data';
    at += 2 + length;
  }
  return 'a JPEG cut short before its frame header';
}
