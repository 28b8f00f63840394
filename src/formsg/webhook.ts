/**
 * Authenticates FormSG webhook deliveries and decrypts their answers.
 *
 * FormSG signs the configured webhook URL, the submission id, the form id and the time, but not
 * the body. So a delivery is trusted only when the signature holds for the URL we configured in
 * FormSG (behind a proxy the request URL differs), the time is recent, and the ids inside the
 * body are the ids the signature covers.
 */

import formsg from '@opengovsg/formsg-sdk';

import { PermanentError } from '../errors.js';

/** Why a delivery was turned away. Each check in the authenticator has its own reason. */
export type RejectionReason =
  | 'missing_signature'
  | 'malformed_signature'
  | 'bad_signature'
  | 'stale_signature'
  | 'other_form'
  | 'malformed_body'
  | 'undecryptable'
  | 'mismatched_ids';

/**
 * A delivery that is not a genuine, fresh submission of our form. Never retried; the HTTP edge
 * answers 400. The message names only the reason, never the key or the signature.
 */
export class WebhookRejectedError extends PermanentError {
  readonly reason: RejectionReason;

  constructor(reason: RejectionReason, cause?: unknown) {
    super(`webhook rejected: ${reason}`, { service: 'formsg', code: reason, cause });
    this.reason = reason;
  }
}

/** How we talk to FormSG. */
export interface FormsgSettings {
  /** Picks the FormSG signing public key the SDK verifies against. */
  mode: 'production' | 'staging' | 'development' | 'test';
  /** The form's secret key (base64), used to decrypt answers. */
  secretKey: string;
  /** The public URL configured as the form's webhook; the signature covers it. */
  webhookUrl: string;
  /** When set, deliveries for any other form are rejected. */
  formId?: string;
}

/** One answer of a decrypted submission, as FormSG sends it. */
export interface FormResponse {
  _id: string;
  question: string;
  fieldType: string;
  answer?: string;
  /** Checkbox answers, or a table's rows. */
  answerArray?: string[] | string[][];
}

/** A delivery that passed every check, with its answers decrypted. */
export interface AuthenticatedSubmission {
  submissionId: string;
  formId: string;
  version: number;
  created?: string;
  responses: FormResponse[];
}

/** What the authenticator is handed by the HTTP edge. */
export interface WebhookInput {
  /** The `X-FormSG-Signature` header, if any. */
  signature: string | undefined;
  /** The parsed JSON body. */
  body: unknown;
}

/** How far the signed time may be from our clock, either way. */
export const SIGNATURE_TOLERANCE_MS = 5 * 60 * 1000;

interface SignatureHeader {
  epoch: number;
  submissionId: string;
  formId: string;
}

interface WebhookData {
  formId: string;
  submissionId: string;
  encryptedContent: string;
  version: number;
  verifiedContent?: string;
  created?: string;
}

const OBJECT_ID = /^[0-9a-f]{24}$/i;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DIGITS = /^\d{1,16}$/;
const HEADER_KEYS = ['t', 's', 'f', 'v1'] as const;

/**
 * Builds the function that checks one delivery. The checks run in a fixed order and the first
 * failure decides the reason: header present, header well formed, time recent, signature valid
 * for `settings.webhookUrl`, form expected, body shaped like FormSG's, body ids equal to the
 * signed ids, content decryptable with our key.
 *
 * `opts.now` replaces the clock for the recency check. The SDK checks recency again against the
 * system clock, so a `now` far from the real time makes genuine signatures fail as bad ones.
 *
 * @throws {WebhookRejectedError} naming the first check that failed.
 */
export function createWebhookAuthenticator(
  settings: FormsgSettings,
  opts: { now?: () => number } = {},
): (input: WebhookInput) => AuthenticatedSubmission {
  const sdk = formsg({ mode: settings.mode });
  const now = opts.now ?? Date.now;

  return ({ signature, body }) => {
    if (signature === undefined || signature.trim() === '') {
      throw new WebhookRejectedError('missing_signature');
    }

    const header = parseSignatureHeader(signature.trim());
    if (header === null) throw new WebhookRejectedError('malformed_signature');

    if (Math.abs(now() - header.epoch) > SIGNATURE_TOLERANCE_MS) {
      throw new WebhookRejectedError('stale_signature');
    }

    verifySignature(sdk, signature.trim(), settings.webhookUrl);

    if (settings.formId !== undefined && header.formId !== settings.formId) {
      throw new WebhookRejectedError('other_form');
    }

    const data = readWebhookData(body);
    if (data === null) throw new WebhookRejectedError('malformed_body');

    const sameIds =
      data.submissionId === header.submissionId && data.formId === header.formId;
    if (!sameIds) throw new WebhookRejectedError('mismatched_ids');

    const responses = decrypt(sdk, settings.secretKey, data);

    const submission: AuthenticatedSubmission = {
      submissionId: data.submissionId,
      formId: data.formId,
      version: data.version,
      responses,
    };
    if (data.created !== undefined) submission.created = data.created;

    return submission;
  };
}

type Sdk = ReturnType<typeof formsg>;

function verifySignature(sdk: Sdk, header: string, webhookUrl: string): void {
  let verified: boolean;
  try {
    verified = sdk.webhooks.authenticate(header, webhookUrl);
  } catch {
    // The SDK's error message quotes the signature: keep it out of ours and out of `cause`.
    throw new WebhookRejectedError('bad_signature');
  }

  if (verified !== true) throw new WebhookRejectedError('bad_signature');
}

function decrypt(sdk: Sdk, secretKey: string, data: WebhookData): FormResponse[] {
  const params: { encryptedContent: string; version: number; verifiedContent?: string } = {
    encryptedContent: data.encryptedContent,
    version: data.version,
  };
  if (data.verifiedContent !== undefined) params.verifiedContent = data.verifiedContent;

  let content: ReturnType<Sdk['crypto']['decrypt']>;
  try {
    content = sdk.crypto.decrypt(secretKey, params);
  } catch {
    // Garbage keys or ciphertext can throw instead of returning null; both mean the same.
    throw new WebhookRejectedError('undecryptable');
  }

  if (content === null) throw new WebhookRejectedError('undecryptable');

  return content.responses.map(toFormResponse);
}

function toFormResponse(field: {
  _id: string;
  question: string;
  fieldType: string;
  answer?: string;
  answerArray?: string[] | string[][];
}): FormResponse {
  const response: FormResponse = {
    _id: field._id,
    question: field.question,
    fieldType: field.fieldType,
  };
  if (typeof field.answer === 'string') response.answer = field.answer;
  if (Array.isArray(field.answerArray)) response.answerArray = field.answerArray;

  return response;
}

/**
 * Reads `t=<epoch ms>,s=<submission id>,f=<form id>,v1=<signature>`. Each key exactly once,
 * nothing else; ids are Mongo ObjectIds and the signature is base64.
 */
function parseSignatureHeader(header: string): SignatureHeader | null {
  const values = new Map<string, string>();
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    if (at <= 0) return null;

    const key = part.slice(0, at).trim();
    if (values.has(key)) return null;
    values.set(key, part.slice(at + 1).trim());
  }

  if (values.size !== HEADER_KEYS.length) return null;
  if (!HEADER_KEYS.every((key) => values.has(key))) return null;

  const epoch = values.get('t') ?? '';
  const submissionId = values.get('s') ?? '';
  const formId = values.get('f') ?? '';
  const signature = values.get('v1') ?? '';

  if (!DIGITS.test(epoch)) return null;
  if (!OBJECT_ID.test(submissionId) || !OBJECT_ID.test(formId)) return null;
  if (!BASE64.test(signature)) return null;

  return { epoch: Number(epoch), submissionId, formId };
}

/** Checks the body is `{ data: { formId, submissionId, encryptedContent, version, ... } }`. */
function readWebhookData(body: unknown): WebhookData | null {
  if (!isRecord(body) || !isRecord(body.data)) return null;

  const { formId, submissionId, encryptedContent, version, verifiedContent, created } =
    body.data;
  if (typeof formId !== 'string' || typeof submissionId !== 'string') return null;
  if (typeof encryptedContent !== 'string' || encryptedContent === '') return null;
  if (typeof version !== 'number' || !Number.isInteger(version)) return null;

  const optionalString = (value: unknown): boolean =>
    value === undefined || value === null || typeof value === 'string';
  if (!optionalString(verifiedContent) || !optionalString(created)) return null;

  const data: WebhookData = { formId, submissionId, encryptedContent, version };
  if (typeof verifiedContent === 'string' && verifiedContent !== '') {
    data.verifiedContent = verifiedContent;
  }
  if (typeof created === 'string') data.created = created;

  return data;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
