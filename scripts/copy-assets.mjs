#!/usr/bin/env node
/**
 * The non-TypeScript files dist/ needs next to the compiled modules: the bundled single-file configs
 * and the web UI's static files (its JSDoc tsconfig stays behind: it only type-checks the page).
 */
import { cpSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const copy = (from, to, filter = () => true) => cpSync(resolve(ROOT, from), resolve(ROOT, to), { recursive: true, filter });
copy('src/models/single-file/configs', 'dist/models/single-file/configs');
copy('src/server/ui', 'dist/server/ui', (p) => !p.endsWith('tsconfig.json'));
