/**
 * A stateful stand-in for the parts of the AWS Amplify REST-JSON API the orchestrator uses. The
 * real `AmplifyClient` talks to it when given its `url` as `endpoint`: paths, bodies, status codes
 * and error shapes (`x-amzn-errortype` plus a `{ "message" }` body) follow the service's, and every
 * request must carry a SigV4 signature made with one of the configured credentials.
 */
import {
  createHash,
  createHmac,
  randomInt,
  randomUUID,
  timingSafeEqual,
  type BinaryLike,
} from 'node:crypto';
import { Hono } from 'hono';
import { SignatureV4 } from '@smithy/signature-v4';
import { delay, FaultInjector, type FaultRule } from './faults.js';
import { serve } from './http-server.js';

export interface AmplifyEmulatorOptions {
  /** Key pairs the emulator accepts; requests signed with anything else are refused. */
  credentials: Array<{ accessKeyId: string; secretAccessKey: string }>;
  /** Region the signatures must be scoped to, and the one in every ARN. Default `us-east-1`. */
  region?: string;
  /** Port to listen on; any free port when absent. */
  port?: number;
}

/** One recorded call, in arrival order. */
export interface RecordedAmplifyRequest {
  method: string;
  /** Path as sent (still percent-encoded), without the query string. */
  path: string;
  status: number;
  /** Amplify operation name (`CreateApp`, ...), or `Unknown` when no route matched. */
  operation: string;
}

export interface AmplifyEmulator {
  /** Endpoint to hand to `AmplifyClient`. */
  url: string;
  faults: FaultInjector;
  state: AmplifyState;
  requests: RecordedAmplifyRequest[];
  close(): Promise<void>;
}

export type Platform = 'WEB' | 'WEB_DYNAMIC' | 'WEB_COMPUTE';
export type Stage =
  | 'PRODUCTION'
  | 'BETA'
  | 'DEVELOPMENT'
  | 'EXPERIMENTAL'
  | 'PULL_REQUEST'
  | 'NONE';
export type JobType = 'RELEASE' | 'RETRY' | 'MANUAL' | 'WEB_HOOK';
export type JobStatus =
  | 'CREATED'
  | 'PENDING'
  | 'PROVISIONING'
  | 'RUNNING'
  | 'FAILED'
  | 'SUCCEED'
  | 'CANCELLING'
  | 'CANCELLED';

export interface AppRecord {
  appId: string;
  appArn: string;
  name: string;
  description: string;
  repository: string;
  platform: Platform;
  createTime: Date;
  updateTime: Date;
  environmentVariables: Record<string, string>;
  defaultDomain: string;
  enableBranchAutoBuild: boolean;
  enableBasicAuth: boolean;
  tags: Record<string, string>;
  buildSpec?: string;
  /** `TOKEN` when created with an access token. The token itself is never kept. */
  repositoryCloneMethod?: 'TOKEN' | 'SSH';
}

export interface BranchRecord {
  branchArn: string;
  branchName: string;
  description: string;
  stage: Stage;
  displayName: string;
  enableNotification: boolean;
  createTime: Date;
  updateTime: Date;
  environmentVariables: Record<string, string>;
  enableAutoBuild: boolean;
  framework: string;
  enableBasicAuth: boolean;
  enablePullRequestPreview: boolean;
  ttl: string;
  tags: Record<string, string>;
  activeJobId: string;
}

export interface JobRecord {
  jobArn: string;
  jobId: string;
  commitId: string;
  commitMessage: string;
  commitTime: Date;
  startTime: Date;
  status: JobStatus;
  jobType: JobType;
  endTime?: Date;
}

interface StoredApp {
  app: AppRecord;
  branches: Map<string, { branch: BranchRecord; jobs: JobRecord[] }>;
}

const ACCOUNT_ID = '123456789012';
/** What AWS appends to the error name in `x-amzn-errortype`; the SDK keeps what precedes ':'. */
const ERROR_NAMESPACE = 'http://internal.amazon.com/coral/com.amazonaws.amplify/';
const PLATFORMS: readonly Platform[] = ['WEB', 'WEB_DYNAMIC', 'WEB_COMPUTE'];
const STAGES: readonly Stage[] = [
  'PRODUCTION',
  'BETA',
  'DEVELOPMENT',
  'EXPERIMENTAL',
  'PULL_REQUEST',
  'NONE',
];
const JOB_TYPES: readonly JobType[] = ['RELEASE', 'RETRY', 'MANUAL', 'WEB_HOOK'];
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** What the emulator holds, with the seeding and inspection helpers tests need. */
export class AmplifyState {
  readonly region: string;
  private apps = new Map<string, StoredApp>();

  constructor(region = 'us-east-1') {
    this.region = region;
  }

  /** Forgets every app, branch and job. */
  reset(): void {
    this.apps.clear();
  }

  /** Every app, oldest first. */
  listApps(): AppRecord[] {
    return [...this.apps.values()].map((stored) => stored.app);
  }

  getApp(appId: string): AppRecord | undefined {
    return this.apps.get(appId)?.app;
  }

  /** The app's branches, oldest first; empty when the app does not exist. */
  branches(appId: string): BranchRecord[] {
    const stored = this.apps.get(appId);

    return stored ? [...stored.branches.values()].map((entry) => entry.branch) : [];
  }

  /** The branch's jobs, oldest first; empty when the app or branch does not exist. */
  jobs(appId: string, branchName: string): JobRecord[] {
    return [...(this.apps.get(appId)?.branches.get(branchName)?.jobs ?? [])];
  }

  /** Seeds an app, for instance one that some other run (or a person) created. */
  addApp(input: { name: string; tags?: Record<string, string>; repository?: string }): AppRecord {
    return this.createApp({
      name: input.name,
      description: '',
      repository: input.repository ?? '',
      platform: 'WEB',
      environmentVariables: {},
      enableBranchAutoBuild: false,
      enableBasicAuth: false,
      tags: { ...input.tags },
    });
  }

  /** Moves a job along, as the build service would. */
  setJobStatus(appId: string, branchName: string, jobId: string, status: JobStatus): void {
    const job = this.jobs(appId, branchName).find((candidate) => candidate.jobId === jobId);
    if (!job) throw new Error(`no job ${jobId} on ${appId}/${branchName}`);

    job.status = status;
    if (status === 'SUCCEED' || status === 'FAILED' || status === 'CANCELLED') {
      job.endTime = new Date();
    }
  }

  /** @internal */
  createApp(
    fields: Omit<AppRecord, 'appId' | 'appArn' | 'defaultDomain' | 'createTime' | 'updateTime'>,
  ): AppRecord {
    let appId = newAppId();
    while (this.apps.has(appId)) appId = newAppId();

    const now = new Date();
    const app: AppRecord = {
      ...fields,
      appId,
      appArn: `arn:aws:amplify:${this.region}:${ACCOUNT_ID}:apps/${appId}`,
      defaultDomain: `${appId}.amplifyapp.com`,
      createTime: now,
      updateTime: now,
    };
    this.apps.set(appId, { app, branches: new Map() });

    return app;
  }

  /** @internal */
  findStored(appId: string): StoredApp | undefined {
    return this.apps.get(appId);
  }

  /** @internal */
  deleteApp(appId: string): void {
    this.apps.delete(appId);
  }

  /** @internal The app or branch an ARN names, with its tags. */
  findTagged(arn: string): { tags: Record<string, string> } | undefined {
    for (const stored of this.apps.values()) {
      if (stored.app.appArn === arn) return stored.app;
      for (const { branch } of stored.branches.values()) {
        if (branch.branchArn === arn) return branch;
      }
    }

    return undefined;
  }
}

/** Starts the emulator on 127.0.0.1 and resolves once it listens. */
export async function startAmplifyEmulator(opts: AmplifyEmulatorOptions): Promise<AmplifyEmulator> {
  const region = opts.region ?? 'us-east-1';
  const state = new AmplifyState(region);
  const faults = new FaultInjector();
  const requests: RecordedAmplifyRequest[] = [];
  const closing = new AbortController();
  const secrets = new Map(opts.credentials.map((c) => [c.accessKeyId, c.secretAccessKey]));

  const app = new Hono();
  app.all('*', async (c) => {
    const request = c.req.raw;
    const url = new URL(request.url);
    const route = matchRoute(request.method, url.pathname);
    const operation = route?.operation ?? 'Unknown';

    const response = await answer({
      request,
      url,
      route,
      state,
      faults,
      region,
      secrets,
      signal: closing.signal,
    });
    const { method } = request;
    requests.push({ method, path: url.pathname, status: response.status, operation });

    return response;
  });

  const server = await serve(app, opts.port === undefined ? {} : { port: opts.port });

  return {
    url: server.url,
    faults,
    state,
    requests,
    async close() {
      closing.abort(new Error('emulator closing'));
      await server.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Request handling

interface Call {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
  state: AmplifyState;
}

interface Route {
  method: string;
  segments: string[];
  operation: string;
  handle(call: Call): unknown;
}

interface MatchedRoute {
  operation: string;
  params: Record<string, string>;
  handle(call: Call): unknown;
}

/** An error in Amplify's shape: the `x-amzn-errortype` name, a status and a message. */
class AmplifyFault extends Error {
  constructor(
    readonly status: number,
    readonly errorType: string,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
  }
}

const badRequest = (message: string) => new AmplifyFault(400, 'BadRequestException', message);
const notFound = (message: string) => new AmplifyFault(404, 'NotFoundException', message);

async function answer(input: {
  request: Request;
  url: URL;
  route: MatchedRoute | undefined;
  state: AmplifyState;
  faults: FaultInjector;
  region: string;
  secrets: Map<string, string>;
  signal: AbortSignal;
}): Promise<Response> {
  const { request, url, route } = input;
  const requestId = randomUUID();

  try {
    const hit = input.faults.match(request.method, url.pathname);
    if (hit?.rule.delayMs) await delay(hit.rule.delayMs, input.signal);
    if (hit?.rule.status !== undefined) return faultResponse(hit.rule, requestId);

    const body = await request.text();
    const refusal = await checkSignature(request, url, body, input.region, input.secrets);
    if (refusal) throw refusal;

    if (!route) {
      throw new AmplifyFault(404, 'UnknownOperationException', 'Unknown operation');
    }

    const result = route.handle({
      params: route.params,
      query: url.searchParams,
      body: parseBody(body),
      state: input.state,
    });

    return json(200, result, { 'x-amzn-requestid': requestId });
  } catch (error) {
    if (error instanceof AmplifyFault) return errorResponse(error, requestId);

    // The emulator closing mid-delay, or a bug in it: answer as the service would.
    const reason = error instanceof Error ? error.message : String(error);
    const fault = new AmplifyFault(500, 'InternalFailureException', `Emulator failure: ${reason}`);

    return errorResponse(fault, requestId);
  }
}

function faultResponse(rule: FaultRule, requestId: string): Response {
  const status = rule.status ?? 500;
  const errorType = rule.errorType ?? defaultErrorType(status);
  const fault = new AmplifyFault(status, errorType, rule.message ?? `Injected ${errorType}`);

  return errorResponse(fault, requestId, rule.headers);
}

/** The error name Amplify uses for a status, for fault rules that name none. */
function defaultErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'BadRequestException';
    case 401:
      return 'UnauthorizedException';
    case 403:
      return 'AccessDeniedException';
    case 404:
      return 'NotFoundException';
    case 429:
      return 'LimitExceededException';
    case 503:
      return 'DependentServiceFailureException';
    default:
      return status >= 500 ? 'InternalFailureException' : 'BadRequestException';
  }
}

function errorResponse(
  fault: AmplifyFault,
  requestId: string,
  headers: Record<string, string> = {},
): Response {
  return json(
    fault.status,
    { ...fault.extra, message: fault.message },
    {
      ...headers,
      'x-amzn-requestid': requestId,
      'x-amzn-errortype': `${fault.errorType}:${ERROR_NAMESPACE}`,
    },
  );
}

function json(status: number, body: unknown, headers: Record<string, string>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, 'content-type': 'application/json' },
  });
}

function parseBody(text: string): Record<string, unknown> {
  if (text.trim() === '') return {};

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw badRequest('Request body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw badRequest('Request body must be a JSON object');
  }

  return parsed as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// SigV4

const SIGNATURE_WINDOW_MS = 15 * 60 * 1000;

/**
 * Checks the request's SigV4 signature the way AWS does: known key, scope (date, region,
 * service), `x-amz-date` within 15 minutes, then the signature itself, recomputed with
 * `@smithy/signature-v4` over exactly the headers the client says it signed. Answers with the
 * refusal AWS would send, or undefined when the request is good.
 */
async function checkSignature(
  request: Request,
  url: URL,
  body: string,
  region: string,
  secrets: Map<string, string>,
): Promise<AmplifyFault | undefined> {
  const authorization = request.headers.get('authorization');
  if (!authorization) {
    const name = 'MissingAuthenticationTokenException';

    return new AmplifyFault(403, name, 'Missing Authentication Token');
  }

  const parsed = parseAuthorization(authorization);
  if (!parsed) {
    return new AmplifyFault(
      403,
      'IncompleteSignatureException',
      'Authorization header requires the AWS4-HMAC-SHA256 algorithm with Credential, ' +
        'SignedHeaders and Signature parameters',
    );
  }

  const secretAccessKey = secrets.get(parsed.accessKeyId);
  if (secretAccessKey === undefined) {
    return new AmplifyFault(
      403,
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }

  const invalid = (message: string) => new AmplifyFault(403, 'InvalidSignatureException', message);
  if (parsed.region !== region) return invalid('Credential should be scoped to a valid region.');
  if (parsed.service !== 'amplify') {
    return invalid("Credential should be scoped to correct service: 'amplify'.");
  }

  const signingDate = parseAmzDate(request.headers.get('x-amz-date'));
  if (!signingDate) {
    return new AmplifyFault(403, 'IncompleteSignatureException', 'Missing or invalid X-Amz-Date');
  }
  if (Math.abs(Date.now() - signingDate.getTime()) > SIGNATURE_WINDOW_MS) {
    return invalid('Signature expired: the request time is too far from the server time.');
  }
  if (!request.headers.get('x-amz-date')?.startsWith(parsed.date)) {
    return invalid('Credential should be scoped to the date of the request.');
  }
  if (!parsed.signedHeaders.includes('host')) {
    return invalid('The host header must be signed.');
  }

  const headers: Record<string, string> = {};
  for (const name of parsed.signedHeaders) {
    const value = request.headers.get(name);
    if (value === null) return invalid(`Signed header ${name} is missing from the request.`);
    headers[name] = value;
  }

  const claimedHash = headers['x-amz-content-sha256'];
  if (claimedHash !== undefined && claimedHash !== sha256Hex(body)) {
    return invalid("The provided 'x-amz-content-sha256' header does not match the body.");
  }

  const signer = new SignatureV4({
    credentials: { accessKeyId: parsed.accessKeyId, secretAccessKey },
    region,
    service: 'amplify',
    sha256: NodeSha256,
    // The client decided what to sign; add nothing it did not send.
    applyChecksum: false,
  });
  const expected = await signer.sign(
    {
      method: request.method,
      protocol: url.protocol,
      hostname: url.hostname,
      path: url.pathname,
      query: queryRecord(url.searchParams),
      headers,
      body: body === '' ? undefined : body,
    },
    { signingDate, signableHeaders: new Set(parsed.signedHeaders) },
  );
  const expectedSignature = parseAuthorization(String(expected.headers.authorization))?.signature;

  if (!expectedSignature || !sameText(expectedSignature, parsed.signature)) {
    return invalid(
      'The request signature we calculated does not match the signature you provided.',
    );
  }

  return undefined;
}

interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

function parseAuthorization(header: string): ParsedAuthorization | undefined {
  const prefix = 'AWS4-HMAC-SHA256 ';
  if (!header.startsWith(prefix)) return undefined;

  const fields = new Map<string, string>();
  for (const part of header.slice(prefix.length).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }

  const credential = fields.get('Credential')?.split('/');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!credential || credential.length !== 5 || !signedHeaders || !signature) return undefined;

  const [accessKeyId, date, region, service, terminator] = credential as [
    string,
    string,
    string,
    string,
    string,
  ];
  if (terminator !== 'aws4_request') return undefined;

  return {
    accessKeyId,
    date,
    region,
    service,
    signedHeaders: signedHeaders.split(';'),
    signature,
  };
}

/** `20240131T235959Z` to a Date; undefined when absent or malformed. */
function parseAmzDate(value: string | null): Date | undefined {
  const match = value?.match(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/);
  if (!match) return undefined;

  const [, year, month, day, hour, minute, second] = match;
  const date = new Date(`${year}-${month}-${day}T${hour}:${minute}:${second}Z`);

  return Number.isNaN(date.getTime()) ? undefined : date;
}

function queryRecord(params: URLSearchParams): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const key of new Set(params.keys())) {
    const values = params.getAll(key);
    query[key] = values.length === 1 ? (values[0] as string) : values;
  }

  return query;
}

function sameText(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);

  return left.length === right.length && timingSafeEqual(left, right);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

function toBinary(data: SourceData): BinaryLike {
  if (typeof data === 'string') return data;
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  return new Uint8Array(data);
}

/** SHA-256 (HMAC-SHA-256 when given a secret) over node:crypto, in the shape the signer wants. */
class NodeSha256 {
  private readonly secret: SourceData | undefined;
  private hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;

  constructor(secret?: SourceData) {
    this.secret = secret;
    this.hash = this.fresh();
  }

  update(data: SourceData): void {
    this.hash.update(toBinary(data));
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  reset(): void {
    this.hash = this.fresh();
  }

  private fresh() {
    return this.secret === undefined
      ? createHash('sha256')
      : createHmac('sha256', toBinary(this.secret));
  }
}

// ---------------------------------------------------------------------------------------------
// Routes

const ROUTES: Route[] = [
  route('POST', '/apps', 'CreateApp', createApp),
  route('GET', '/apps', 'ListApps', listApps),
  route('GET', '/apps/{appId}', 'GetApp', ({ params, state }) => ({
    app: appView(requireApp(state, params.appId).app),
  })),
  route('DELETE', '/apps/{appId}', 'DeleteApp', ({ params, state }) => {
    const { app } = requireApp(state, params.appId);
    state.deleteApp(app.appId);

    return { app: appView(app) };
  }),
  route('POST', '/apps/{appId}/branches', 'CreateBranch', createBranch),
  route('GET', '/apps/{appId}/branches', 'ListBranches', ({ params, query, state }) => {
    const stored = requireApp(state, params.appId);
    const all = [...stored.branches.values()].map(branchView);
    const page = paginate(all, query, 50);

    return { branches: page.items, ...page.next };
  }),
  route('GET', '/apps/{appId}/branches/{branchName}', 'GetBranch', ({ params, state }) => ({
    branch: branchView(requireBranch(state, params)),
  })),
  route('DELETE', '/apps/{appId}/branches/{branchName}', 'DeleteBranch', ({ params, state }) => {
    const stored = requireApp(state, params.appId);
    const entry = requireBranch(state, params);
    stored.branches.delete(entry.branch.branchName);

    return { branch: branchView(entry) };
  }),
  route('POST', '/apps/{appId}/branches/{branchName}/jobs', 'StartJob', startJob),
  route('GET', '/apps/{appId}/branches/{branchName}/jobs', 'ListJobs', (call) => {
    const { params, query, state } = call;
    const { jobs } = requireBranch(state, params);
    // Newest first, as the service lists them.
    const page = paginate([...jobs].reverse().map(jobView), query, 50);

    return { jobSummaries: page.items, ...page.next };
  }),
  route('GET', '/apps/{appId}/branches/{branchName}/jobs/{jobId}', 'GetJob', (call) => {
    const { params, state } = call;
    const { jobs } = requireBranch(state, params);
    const job = jobs.find((candidate) => candidate.jobId === params.jobId);
    if (!job) throw notFound(`Job ${params.jobId} not found.`);

    return { job: { summary: jobView(job), steps: [] } };
  }),
  route('GET', '/tags/{resourceArn}', 'ListTagsForResource', ({ params, state }) => ({
    tags: { ...requireTagged(state, params.resourceArn).tags },
  })),
  route('POST', '/tags/{resourceArn}', 'TagResource', ({ params, body, state }) => {
    const resource = requireTagged(state, params.resourceArn);
    const tags = readTags(body.tags);
    if (!tags) throw badRequest("Value null at 'tags' failed to satisfy constraint");
    Object.assign(resource.tags, tags);

    return {};
  }),
  route('DELETE', '/tags/{resourceArn}', 'UntagResource', ({ params, query, state }) => {
    const resource = requireTagged(state, params.resourceArn);
    for (const key of query.getAll('tagKeys')) delete resource.tags[key];

    return {};
  }),
];

function route(
  method: string,
  pattern: string,
  operation: string,
  handle: (call: Call) => unknown,
): Route {
  const segments = pattern.split('/').slice(1);

  return { method, segments, operation, handle };
}

/** Finds the operation for a method and a raw (still percent-encoded) path. */
function matchRoute(method: string, rawPath: string): MatchedRoute | undefined {
  const segments = rawPath.split('/').slice(1);

  for (const candidate of ROUTES) {
    if (candidate.method !== method || candidate.segments.length !== segments.length) continue;

    const params: Record<string, string> = {};
    const matches = candidate.segments.every((expected, index) => {
      const actual = segments[index] ?? '';
      if (!expected.startsWith('{')) return expected === actual;

      const decoded = decodeSegment(actual);
      if (decoded === undefined || decoded === '') return false;
      params[expected.slice(1, -1)] = decoded;

      return true;
    });

    if (matches) return { operation: candidate.operation, params, handle: candidate.handle };
  }

  return undefined;
}

function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function createApp({ body, state }: Call): unknown {
  const name = body.name;
  if (typeof name !== 'string' || name.length === 0) {
    throw badRequest("1 validation error detected: Value at 'name' failed to satisfy constraint: " +
      'Member must not be null');
  }
  if (name.length > 255) {
    throw badRequest("Value at 'name' failed to satisfy constraint: length must be at most 255");
  }

  const repository = optionalString(body, 'repository') ?? '';
  const accessToken = optionalString(body, 'accessToken');
  const oauthToken = optionalString(body, 'oauthToken');
  if (repository !== '' && !accessToken && !oauthToken) {
    throw badRequest('An accessToken or oauthToken is required to connect a repository.');
  }

  const platform = optionalString(body, 'platform') ?? 'WEB';
  if (!PLATFORMS.includes(platform as Platform)) {
    throw badRequest(`Value '${platform}' at 'platform' failed to satisfy enum constraint`);
  }

  const { tags, environmentVariables } = readTagsAndVariables(body);

  const buildSpec = optionalString(body, 'buildSpec');
  const app = state.createApp({
    name,
    description: optionalString(body, 'description') ?? '',
    repository,
    platform: platform as Platform,
    environmentVariables,
    enableBranchAutoBuild: optionalBoolean(body, 'enableBranchAutoBuild') ?? false,
    enableBasicAuth: optionalBoolean(body, 'enableBasicAuth') ?? false,
    tags,
    ...(buildSpec === undefined ? {} : { buildSpec }),
    ...(accessToken ? { repositoryCloneMethod: 'TOKEN' as const } : {}),
  });

  return { app: appView(app) };
}

function listApps({ query, state }: Call): unknown {
  const page = paginate(state.listApps().map(appView), query, 100);

  return { apps: page.items, ...page.next };
}

function createBranch({ params, body, state }: Call): unknown {
  const stored = requireApp(state, params.appId);

  const branchName = body.branchName;
  if (typeof branchName !== 'string' || branchName.length === 0 || branchName.length > 255) {
    throw badRequest("1 validation error detected: Value at 'branchName' failed to satisfy " +
      'constraint: Member must have length between 1 and 255');
  }
  if (stored.branches.has(branchName)) {
    throw badRequest(`Branch ${branchName} already exists for app ${stored.app.appId}.`);
  }

  const stage = optionalString(body, 'stage') ?? 'NONE';
  if (!STAGES.includes(stage as Stage)) {
    throw badRequest(`Value '${stage}' at 'stage' failed to satisfy enum constraint`);
  }

  const { tags, environmentVariables } = readTagsAndVariables(body);

  const now = new Date();
  const branch: BranchRecord = {
    branchArn: `${stored.app.appArn}/branches/${encodeURIComponent(branchName)}`,
    branchName,
    description: optionalString(body, 'description') ?? '',
    stage: stage as Stage,
    displayName: optionalString(body, 'displayName') ?? branchName.replace(/\//g, '-'),
    enableNotification: optionalBoolean(body, 'enableNotification') ?? false,
    createTime: now,
    updateTime: now,
    environmentVariables,
    enableAutoBuild: optionalBoolean(body, 'enableAutoBuild') ?? true,
    framework: optionalString(body, 'framework') ?? '',
    enableBasicAuth: optionalBoolean(body, 'enableBasicAuth') ?? false,
    enablePullRequestPreview: optionalBoolean(body, 'enablePullRequestPreview') ?? false,
    ttl: optionalString(body, 'ttl') ?? '5',
    tags,
    activeJobId: '',
  };
  const entry = { branch, jobs: [] };
  stored.branches.set(branchName, entry);

  return { branch: branchView(entry) };
}

function startJob({ params, body, state }: Call): unknown {
  const entry = requireBranch(state, params);

  const jobType = body.jobType;
  if (typeof jobType !== 'string' || !JOB_TYPES.includes(jobType as JobType)) {
    throw badRequest("1 validation error detected: Value at 'jobType' failed to satisfy enum " +
      'constraint: Member must satisfy enum value set: [RELEASE, RETRY, MANUAL, WEB_HOOK]');
  }

  const retryOf = optionalString(body, 'jobId');
  if (jobType === 'RETRY') {
    if (!retryOf) throw badRequest('A jobId is required to retry a job.');
    if (!entry.jobs.some((job) => job.jobId === retryOf)) {
      throw notFound(`Job ${retryOf} not found.`);
    }
  }

  const commitTime = body.commitTime;
  const now = new Date();
  const jobId = String(entry.jobs.length + 1);
  const job: JobRecord = {
    jobArn: `${entry.branch.branchArn}/jobs/${jobId.padStart(10, '0')}`,
    jobId,
    commitId: optionalString(body, 'commitId') ?? 'HEAD',
    commitMessage: optionalString(body, 'commitMessage') ?? '',
    commitTime: typeof commitTime === 'number' ? new Date(commitTime * 1000) : now,
    startTime: now,
    status: 'PENDING',
    jobType: jobType as JobType,
  };
  entry.jobs.push(job);
  entry.branch.activeJobId = jobId;
  entry.branch.updateTime = now;

  return { jobSummary: jobView(job) };
}

function requireApp(state: AmplifyState, appId: string | undefined): StoredApp {
  const stored = appId === undefined ? undefined : state.findStored(appId);
  if (!stored) throw notFound(`App ${appId ?? ''} not found.`);

  return stored;
}

function requireBranch(
  state: AmplifyState,
  params: Record<string, string>,
): { branch: BranchRecord; jobs: JobRecord[] } {
  const stored = requireApp(state, params.appId);
  const { branchName } = params;
  const entry = branchName === undefined ? undefined : stored.branches.get(branchName);
  if (!entry) throw notFound(`Branch ${params.branchName ?? ''} not found.`);

  return entry;
}

function requireTagged(
  state: AmplifyState,
  arn: string | undefined,
): { tags: Record<string, string> } {
  if (arn === undefined || !arn.startsWith('arn:aws:amplify:')) {
    throw badRequest('The resource ARN is not a valid Amplify ARN.');
  }
  const resource = state.findTagged(arn);
  if (!resource) {
    throw new AmplifyFault(404, 'ResourceNotFoundException', `Resource ${arn} not found.`, {
      code: 'ResourceNotFound',
    });
  }

  return resource;
}

/** Slices a listing by `maxResults` and an opaque `nextToken`, as the List* calls do. */
function paginate<T>(
  items: T[],
  query: URLSearchParams,
  maxLimit: number,
): { items: T[]; next: { nextToken?: string } } {
  const maxParam = query.get('maxResults');
  const limit = maxParam === null ? maxLimit : Number(maxParam);
  if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) {
    throw badRequest(`Value at 'maxResults' failed to satisfy constraint: ` +
      `Member must be between 1 and ${maxLimit}`);
  }

  const token = query.get('nextToken');
  let offset = 0;
  if (token !== null) {
    const decoded = Buffer.from(token, 'base64url').toString('utf8').match(/^page:(\d+)$/);
    if (!decoded?.[1]) throw badRequest('Invalid nextToken');
    offset = Number(decoded[1]);
  }

  const end = offset + limit;
  const nextToken = Buffer.from(`page:${end}`).toString('base64url');
  const next = end < items.length ? { nextToken } : {};

  return { items: items.slice(offset, end), next };
}

// ---------------------------------------------------------------------------------------------
// Wire views: timestamps as epoch seconds, secrets never included.

const seconds = (date: Date) => date.getTime() / 1000;

function appView(app: AppRecord): Record<string, unknown> {
  return {
    ...app,
    createTime: seconds(app.createTime),
    updateTime: seconds(app.updateTime),
    environmentVariables: { ...app.environmentVariables },
    tags: { ...app.tags },
    enableBranchAutoDeletion: false,
    customRules: [],
  };
}

function branchView(entry: { branch: BranchRecord; jobs: JobRecord[] }): Record<string, unknown> {
  const { branch, jobs } = entry;
  const { createTime, updateTime, ...rest } = branch;

  return {
    ...rest,
    createTime: seconds(createTime),
    updateTime: seconds(updateTime),
    environmentVariables: { ...branch.environmentVariables },
    tags: { ...branch.tags },
    customDomains: [],
    totalNumberOfJobs: String(jobs.length),
  };
}

function jobView(job: JobRecord): Record<string, unknown> {
  return {
    ...job,
    commitTime: seconds(job.commitTime),
    startTime: seconds(job.startTime),
    ...(job.endTime ? { endTime: seconds(job.endTime) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Field readers

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw badRequest(`Value at '${field}' must be a string`);

  return value;
}

function optionalBoolean(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw badRequest(`Value at '${field}' must be a boolean`);

  return value;
}

function readStringMap(value: unknown): Record<string, string> | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;

  const entries = Object.entries(value);
  if (entries.some(([, item]) => typeof item !== 'string')) return undefined;

  return Object.fromEntries(entries) as Record<string, string>;
}

/** The `tags` and `environmentVariables` maps CreateApp and CreateBranch both take. */
function readTagsAndVariables(body: Record<string, unknown>): {
  tags: Record<string, string>;
  environmentVariables: Record<string, string>;
} {
  const tags = body.tags === undefined ? {} : readTags(body.tags);
  if (!tags) throw badRequest("Value at 'tags' must be a map of strings");
  const environmentVariables =
    body.environmentVariables === undefined ? {} : readStringMap(body.environmentVariables);
  if (!environmentVariables) {
    throw badRequest("Value at 'environmentVariables' must be a map of strings");
  }

  return { tags, environmentVariables };
}

/** Tags as AWS allows them: at most 50, keys 1..128 chars not starting `aws:`, values ≤ 256. */
function readTags(value: unknown): Record<string, string> | undefined {
  const tags = readStringMap(value);
  if (!tags) return undefined;

  const entries = Object.entries(tags);
  if (entries.length > 50) throw badRequest('A resource can have at most 50 tags.');
  for (const [key, tagValue] of entries) {
    if (key.length === 0 || key.length > 128 || key.toLowerCase().startsWith('aws:')) {
      throw badRequest(`Tag key '${key}' is not allowed.`);
    }
    if (tagValue.length > 256) throw badRequest(`Tag value for '${key}' is too long.`);
  }

  return tags;
}

function newAppId(): string {
  let id = 'd';
  for (let i = 0; i < 13; i += 1) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];

  return id;
}
