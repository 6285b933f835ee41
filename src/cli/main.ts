#!/usr/bin/env node
/** The `cnxs` executable: everything lives in cli.ts, which has no side effects at import. */
import { main } from './cli.js';

process.exitCode = await main(process.argv.slice(2));
