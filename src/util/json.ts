/**
 * JSON as Python's `json` module writes it: diffusers' `save_config` emits the bare tokens
 * `NaN`, `Infinity` and `-Infinity` (e.g. DPMSolverMultistep's `lambda_min_clipped`), which
 * JSON.parse rejects. They are accepted here, outside strings only.
 */
const MARK = '\u0000pyjson:';

export function parsePythonJson(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === '\\') out += text[++i] ?? '';
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
      continue;
    }
    const token = ['-Infinity', 'Infinity', 'NaN'].find((t) => text.startsWith(t, i));
    if (token) {
      out += JSON.stringify(MARK + token);
      i += token.length - 1;
      continue;
    }
    out += ch;
  }
  return JSON.parse(out, (_key, value: unknown) => {
    if (typeof value === 'string' && value.startsWith(MARK)) {
      const t = value.slice(MARK.length);
      return t === 'NaN' ? NaN : t === 'Infinity' ? Infinity : -Infinity;
    }
    return value;
  });
}
