/** `cnxs worker`'s options: every mistake is a UsageError naming the option, before Redis or the model is touched. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WORKER_USAGE, workerCommand } from '../src/cli/worker.js';
import { UsageError } from '../src/cli/usage.js';

const env = { XDG_CACHE_HOME: '/nonexistent' };

test('cnxs worker: bad options are UsageErrors that name the option', async () => {
  const cases: [string[], RegExp][] = [
    [['--model', 'm'], /worker needs --redis <url> \(or \$CNXS_REDIS_URL\)/],
    [['--redis', 'localhost:6379', '--model', 'm'], /--redis must be a redis:\/\/ or rediss:\/\/ URL, got "localhost:6379"/],
    [['--redis', 'not a url', '--model', 'm'], /--redis must be a URL such as redis:\/\/127\.0\.0\.1:6379, got "not a url"/],
    [['--redis', 'http://127.0.0.1:6379', '--model', 'm'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
    [['--redis', 'redis://127.0.0.1:6379/x', '--model', 'm'], /--redis database must be a number/],
    [['--redis', 'redis://127.0.0.1:6379'], /worker needs --model/],
    [['--redis', 'redis://127.0.0.1:6379', '--model', 'm', '--lock-seconds', '0'], /--lock-seconds must be ≥ 1, got 0/],
    [['--redis', 'redis://127.0.0.1:6379', '--model', 'm', '--max-stalled', '1.5'], /--max-stalled must be a whole number/],
    [['--redis', 'redis://127.0.0.1:6379', '--model', 'm', '--prefix', 'a b'], /--prefix must be letters/],
    [['--redis', 'redis://127.0.0.1:6379', '--model', 'm', '--workers', '2'], /unknown option --workers/],
    [['--redis', 'redis://127.0.0.1:6379', '--model', 'm', 'extra'], /worker takes no positional arguments, got "extra"/],
  ];
  for (const [args, message] of cases) {
    await assert.rejects(workerCommand(args, { env }), (e: unknown) => e instanceof UsageError && message.test(e.message), args.join(' '));
  }
});

test('cnxs worker --help: the usage with the Redis, model and tuning options', async () => {
  for (const option of ['--redis URL', '--model', '--controlnet', '--prefix', '--lock-seconds', '--stalled-check-seconds', '--max-stalled', '--grace-seconds']) {
    assert.ok(WORKER_USAGE.includes(option), option);
  }
  const lines: unknown[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => lines.push(...a);
  try {
    assert.equal(await workerCommand(['--help'], { env }), 0);
  } finally {
    console.log = log;
  }
  assert.deepEqual(lines, [WORKER_USAGE]);
});
