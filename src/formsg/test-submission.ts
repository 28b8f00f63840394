/**
 * Builds webhook deliveries exactly as FormSG does, for the demo, the `submit` command and the
 * tests: answers encrypted to the form's public key with the SDK, the header signed with the
 * signing key the SDK ships for its `test` mode. Only an authenticator in `test` mode accepts
 * them; production and staging verify against FormSG's own keys.
 */

import { randomBytes } from 'node:crypto';

import formsg from '@opengovsg/formsg-sdk';
import nacl from 'tweetnacl';
import { SIGNING_KEYS } from '@opengovsg/formsg-sdk/dist/resource/signing-keys.js';

import { defaultFieldTitles, type FieldTitles } from './fields.js';
import type { FormResponse } from './webhook.js';

/** The webhook body FormSG posts for a storage-mode form. */
export interface WebhookBody {
  data: {
    formId: string;
    submissionId: string;
    encryptedContent: string;
    version: number;
    created: string;
    attachmentDownloadUrls: Record<string, string>;
  };
}

/** A delivery ready to be posted to the webhook URL. */
export interface TestSubmission {
  headers: { 'X-FormSG-Signature': string; 'content-type': 'application/json' };
  body: WebhookBody;
  submissionId: string;
}

export interface TestSubmissionOptions {
  /** Answers keyed by field (titled with `titles`), or the raw responses to encrypt. */
  answers: Partial<Record<keyof FieldTitles, string>> | FormResponse[];
  /** Question titles for keyed answers; the published form's titles when absent. */
  titles?: FieldTitles;
  /** The form's public key (base64); the authenticator decrypts with its secret key. */
  formPublicKey: string;
  /** The URL the signature covers: the webhook URL configured for the form. */
  webhookUrl: string;
  formId: string;
  /** A 24-hex Mongo ObjectId; a fresh one when absent. */
  submissionId?: string;
  /** Signing time in epoch milliseconds; now when absent. */
  epoch?: number;
}

/** The version of FormSG's storage-mode encryption that `crypto.encrypt` produces. */
const ENCRYPTION_VERSION = 1;

const FIELD_TYPES: Record<keyof FieldTitles, string> = {
  email: 'email',
  agency: 'textfield',
  repoName: 'textfield',
  siteName: 'textfield',
  pointOfContact: 'textfield',
};

/** A new form key pair (base64), as FormSG generates when a storage-mode form is created. */
export function generateFormKeyPair(): { publicKey: string; secretKey: string } {
  return formsg().crypto.generate();
}

/** A new Mongo-style ObjectId: 4 bytes of seconds since the epoch, then 8 random bytes. */
export function generateObjectId(epochMs: number = Date.now()): string {
  const seconds = Math.floor(epochMs / 1000) >>> 0;
  const time = seconds.toString(16).padStart(8, '0');

  return time + randomBytes(8).toString('hex');
}

/** Encrypts the answers and signs the delivery the way FormSG does. */
export function buildTestSubmission(opts: TestSubmissionOptions): TestSubmission {
  const epoch = opts.epoch ?? Date.now();
  const submissionId = opts.submissionId ?? generateObjectId(epoch);
  const responses = Array.isArray(opts.answers)
    ? opts.answers
    : toResponses(opts.answers, opts.titles ?? defaultFieldTitles);

  const sdk = formsg({ mode: 'test', webhookSecretKey: SIGNING_KEYS.test.secretKey });

  // FormSG encrypts the bare array of responses; decrypt wraps it back into `{ responses }`.
  const encryptedContent = sdk.crypto.encrypt(responses, opts.formPublicKey);

  const signed = { uri: opts.webhookUrl, submissionId, formId: opts.formId, epoch };
  const signature = sdk.webhooks.generateSignature(signed);
  const header = sdk.webhooks.constructHeader({ ...signed, signature });

  const body: WebhookBody = {
    data: {
      formId: opts.formId,
      submissionId,
      encryptedContent,
      version: ENCRYPTION_VERSION,
      created: new Date(epoch).toISOString(),
      attachmentDownloadUrls: {},
    },
  };

  return {
    headers: { 'X-FormSG-Signature': header, 'content-type': 'application/json' },
    body,
    submissionId,
  };
}

function toResponses(
  answers: Partial<Record<keyof FieldTitles, string>>,
  titles: FieldTitles,
): FormResponse[] {
  const keys = Object.keys(FIELD_TYPES) as Array<keyof FieldTitles>;

  return keys.flatMap((key) => {
    const answer = answers[key];
    if (answer === undefined) return [];

    const question = titles[key];

    return [{ _id: generateObjectId(), question, fieldType: FIELD_TYPES[key], answer }];
  });
}

/** The public key (base64) that belongs to a form's secret key. */
export function publicKeyFromSecretKey(secretKey: string): string {
  const pair = nacl.box.keyPair.fromSecretKey(Buffer.from(secretKey, 'base64'));

  return Buffer.from(pair.publicKey).toString('base64');
}
