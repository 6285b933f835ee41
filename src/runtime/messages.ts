/** onnxruntime's error messages made readable for a one-line notice. */

/** An error's first line (onnxruntime's messages end in a newline; Node's are one line). */
export function firstLine(e: unknown, max = 500): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, max);
}

/**
 * onnxruntime's message without what only its developers need: source locations, the function
 * signature and the "[ONNXRuntimeError] : 1 : FAIL :" prefix; cut to 160 characters. Node's own
 * errors ("ENOENT: no such file or directory, mkdir '…'") pass unchanged.
 */
export function conciseError(e: unknown): string {
  let m = firstLine(e);
  m = m.replace(/^\S*onnxruntime\S*\.(?:cc|h|cpp):\d+\s+/, '');
  m = m.replace(/^.*\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*/, '');
  // "graph.cc:5280 AddExternalInitializersToGraphProtoImpl Failed to write …": a location and a function name
  m = m.replace(/^\w+\.(?:cc|h|cpp):\d+\s+\w+\s+/, '');
  // a failed check reads "<signature> <condition> was false. <what happened>"
  const check = /\bwas false\.\s*(.+)$/.exec(m);
  if (check) m = check[1]!;
  m = m.trim();
  return m.length > 160 ? `${m.slice(0, 159)}…` : m;
}
