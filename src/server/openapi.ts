/**
 * The OpenAPI 3.1 description served at `/openapi.json`. Written out by hand, as the API's documentation;
 * test/server-api.test.ts holds it to the server: every route the server answers is here and every path
 * here is answered, and the request schema lists exactly the fields `parseGenerationRequest` reads.
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Schema) => ({ 'application/json': { schema } });
const errorResponse = (description: string) => ({ description, content: json(ref('Error')) });
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' }, description: 'the id `POST /v1/generations` returned' };
const secured = [{ bearer: [] }];
const open: unknown[] = [];

const GENERATION_REQUEST: Schema = {
  type: 'object',
  required: ['prompt', 'image'],
  additionalProperties: false,
  properties: {
    prompt: { type: 'string', description: 'what to draw' },
    negativePrompt: { type: 'string', description: 'what not to draw' },
    image: { type: 'string', description: 'the control image, PNG or JPEG, as base64 or a data URL' },
    canny: {
      type: 'object',
      description: 'run OpenCV-exact Canny on the image first (absent: the image is the control image)',
      properties: { low: { type: 'number', default: 100 }, high: { type: 'number', default: 200 } },
      additionalProperties: false,
    },
    steps: { type: 'integer', minimum: 1, default: 30, description: 'denoising steps (capped by the server)' },
    guidanceScale: { type: 'number', default: 7.5, description: "classifier-free guidance (A1111's CFG scale)" },
    controlScale: { type: 'number', default: 1, description: 'strength of the control' },
    controlStart: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'fraction of the steps where control starts' },
    controlEnd: { type: 'number', minimum: 0, maximum: 1, default: 1, description: 'fraction of the steps where control ends' },
    scheduler: { type: 'string', description: "a sampler name `cnxs generate --scheduler` accepts (default: the model's)" },
    seed: {
      oneOf: [{ type: 'integer', minimum: 0 }, { type: 'string', pattern: '^[0-9]+$' }],
      description: 'seed 0 … 2^64−1 (a decimal string above 2^53); image k uses seed + k; default random',
    },
    width: { type: 'integer', description: "image width (default: the model's resolution fitted to the control image's aspect)" },
    height: { type: 'integer', description: 'image height (same default)' },
    numImages: { type: 'integer', minimum: 1, default: 1, description: 'images to generate (capped by the server)' },
  },
};

const JOB_STATUS: Schema = {
  type: 'object',
  required: ['id', 'status', 'progress', 'images', 'createdAt'],
  properties: {
    id: { type: 'string' },
    status: { enum: ['queued', 'running', 'succeeded', 'failed', 'canceled'] },
    position: { type: 'integer', description: 'jobs ahead of this one while queued (0 = next)' },
    progress: { type: 'object', properties: { step: { type: 'integer' }, total: { type: 'integer' } }, required: ['step', 'total'] },
    images: { type: 'array', items: { type: 'string' }, description: 'paths of the result PNGs' },
    result: {
      type: 'object',
      properties: {
        parameters: { type: 'array', items: { type: 'string' }, description: "each image's A1111 `parameters` text (also in its PNG)" },
        seeds: { type: 'array', items: { type: 'string' } },
        width: { type: 'integer' },
        height: { type: 'integer' },
        sampler: { type: 'string' },
        device: { type: 'string' },
        nsfwContentDetected: { oneOf: [{ type: 'array', items: { type: 'boolean' } }, { type: 'null' }] },
        seconds: { type: 'number' },
      },
    },
    error: { type: 'string', description: 'why it failed, one line' },
    createdAt: { type: 'number', description: 'ms since the epoch' },
    startedAt: { type: 'number' },
    finishedAt: { type: 'number' },
  },
};

const A1111_REQUEST: Schema = {
  type: 'object',
  description: "AUTOMATIC1111's txt2img subset; other A1111 fields are refused",
  properties: {
    prompt: { type: 'string' },
    negative_prompt: { type: 'string' },
    steps: { type: 'integer' },
    cfg_scale: { type: 'number' },
    seed: { type: 'integer', description: '-1: random' },
    width: { type: 'integer' },
    height: { type: 'integer' },
    sampler_name: { type: 'string' },
    batch_size: { type: 'integer' },
    alwayson_scripts: {
      type: 'object',
      properties: {
        controlnet: {
          type: 'object',
          properties: {
            args: {
              type: 'array',
              minItems: 1,
              maxItems: 1,
              items: {
                type: 'object',
                required: ['image'],
                properties: {
                  image: { type: 'string', description: 'base64 or data URL' },
                  module: { enum: ['canny', 'none'] },
                  weight: { type: 'number' },
                  guidance_start: { type: 'number' },
                  guidance_end: { type: 'number' },
                  threshold_a: { type: 'number', description: 'canny low threshold' },
                  threshold_b: { type: 'number', description: 'canny high threshold' },
                },
              },
            },
          },
        },
      },
    },
  },
};

const common = {
  '401': errorResponse('the API key is missing or wrong'),
};

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'cnxs serve',
      version: '1',
      description: 'ControlNet-XS image generation: submit jobs to a queue, follow them, fetch their PNGs. Errors are `{ error: { message, field? } }`.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the server\'s --api-key (only when it has one)' } },
      schemas: {
        GenerationRequest: GENERATION_REQUEST,
        JobStatus: JOB_STATUS,
        A1111Txt2ImgRequest: A1111_REQUEST,
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', required: ['message'], properties: { message: { type: 'string' }, field: { type: 'string' } } } },
        },
      },
    },
    paths: {
      '/v1/generations': {
        post: {
          summary: 'Queue a generation',
          security: secured,
          requestBody: { required: true, content: json(ref('GenerationRequest')) },
          responses: {
            '202': {
              description: 'queued; `Location` is the job',
              content: json({ type: 'object', properties: { id: { type: 'string' }, status: { const: 'queued' }, position: { type: 'integer' } } }),
            },
            '400': errorResponse('a field is wrong (`field` names it)'),
            '413': errorResponse('the body is over the size cap'),
            '429': errorResponse('the queue is full; `Retry-After` says when to try again'),
            ...common,
          },
        },
      },
      '/v1/generations/{id}': {
        get: {
          summary: "A job's status",
          security: secured,
          parameters: [idParam],
          responses: { '200': { description: 'the job', content: json(ref('JobStatus')) }, '404': errorResponse('unknown job'), ...common },
        },
        delete: {
          summary: 'Cancel a job (a running one stops between steps)',
          security: secured,
          parameters: [idParam],
          responses: { '200': { description: 'the job after canceling', content: json(ref('JobStatus')) }, '404': errorResponse('unknown job'), ...common },
        },
      },
      '/v1/generations/{id}/images/{n}.png': {
        get: {
          summary: 'Result image n (PNG with its A1111 `parameters` text chunk)',
          security: secured,
          parameters: [idParam, { name: 'n', in: 'path', required: true, schema: { type: 'integer', minimum: 0 } }],
          responses: { '200': { description: 'the PNG', content: { 'image/png': {} } }, '404': errorResponse('unknown job or image'), ...common },
        },
      },
      '/v1/generations/{id}/events': {
        get: {
          summary: 'Server-Sent Events: `status` (JobStatus), `progress` ({ step, total, preview? } — a PNG data URL), `done` (the final JobStatus); comment heartbeats',
          security: secured,
          parameters: [idParam],
          responses: { '200': { description: 'the event stream', content: { 'text/event-stream': {} } }, '404': errorResponse('unknown job'), ...common },
        },
      },
      '/v1/canny': {
        post: {
          summary: "The Canny edges a generation with `canny` would use (the UI's preview)",
          security: secured,
          requestBody: {
            required: true,
            content: json({
              type: 'object',
              required: ['image'],
              additionalProperties: false,
              properties: { image: { type: 'string' }, low: { type: 'number', default: 100 }, high: { type: 'number', default: 200 } },
            }),
          },
          responses: { '200': { description: 'the edge map', content: { 'image/png': {} } }, '400': errorResponse('a field is wrong'), ...common },
        },
      },
      '/sdapi/v1/txt2img': {
        post: {
          summary: "AUTOMATIC1111's txt2img (subset), synchronous: answers when the job is done",
          security: secured,
          requestBody: { required: true, content: json(ref('A1111Txt2ImgRequest')) },
          responses: {
            '200': {
              description: 'the images',
              content: json({
                type: 'object',
                properties: { images: { type: 'array', items: { type: 'string', description: 'PNG, base64' } }, parameters: { type: 'object' }, info: { type: 'string' } },
              }),
            },
            '400': errorResponse('a field is wrong'),
            '429': errorResponse('the queue is full'),
            '500': errorResponse('the generation failed'),
            ...common,
          },
        },
      },
      '/healthz': { get: { summary: 'Liveness', security: open, responses: { '200': { description: 'the process answers' } } } },
      '/readyz': {
        get: {
          summary: 'Readiness: models loaded and the queue reachable',
          security: open,
          responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } },
        },
      },
      '/metrics': { get: { summary: 'Prometheus text exposition', security: open, responses: { '200': { description: 'metrics', content: { 'text/plain': {} } } } } },
      '/openapi.json': { get: { summary: 'This document', security: open, responses: { '200': { description: 'OpenAPI 3.1' } } } },
      '/': { get: { summary: 'The web UI', security: open, responses: { '200': { description: 'index.html', content: { 'text/html': {} } } } } },
      '/{file}': {
        get: {
          summary: "A file of the web UI (its scripts and styles)",
          security: open,
          parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: 'the file' }, '404': errorResponse('no such file') },
        },
      },
    },
  };
}
