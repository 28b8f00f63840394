import { describe, expect, it } from 'vitest';

import { ValidationError } from '../src/errors.js';
import {
  defaultFieldTitles,
  readRequesterEmail,
  readSiteRequest,
  validateRepoName,
  type FieldTitles,
} from '../src/formsg/fields.js';
import {
  buildTestSubmission,
  generateFormKeyPair,
  generateObjectId,
  type TestSubmission,
  type TestSubmissionOptions,
} from '../src/formsg/test-submission.js';
import {
  createWebhookAuthenticator,
  WebhookRejectedError,
  type FormResponse,
  type FormsgSettings,
  type RejectionReason,
  type WebhookInput,
} from '../src/formsg/webhook.js';

const WEBHOOK_URL = 'https://sites.example.gov.sg/formsg/webhook';
const FORM_ID = generateObjectId();
const KEYS = generateFormKeyPair();

const ANSWERS = {
  email: 'Jane_Tan@Agency.gov.sg',
  agency: 'Ministry of Examples',
  repoName: 'example-site',
  siteName: 'Example Site',
  pointOfContact: 'Jane Tan',
};

const SETTINGS: FormsgSettings = {
  mode: 'test',
  secretKey: KEYS.secretKey,
  webhookUrl: WEBHOOK_URL,
  formId: FORM_ID,
};

function submission(overrides: Partial<TestSubmissionOptions> = {}) {
  return buildTestSubmission({
    answers: ANSWERS,
    formPublicKey: KEYS.publicKey,
    webhookUrl: WEBHOOK_URL,
    formId: FORM_ID,
    ...overrides,
  });
}

function delivery(built: TestSubmission): WebhookInput {
  return { signature: built.headers['X-FormSG-Signature'], body: built.body };
}

function rejection(run: () => unknown): WebhookRejectedError {
  try {
    run();
  } catch (error) {
    if (error instanceof WebhookRejectedError) return error;
    throw error;
  }
  throw new Error('the delivery was accepted');
}

function expectRejected(run: () => unknown, reason: RejectionReason): void {
  const error = rejection(run);

  expect(error.reason).toBe(reason);
  expect(error.retryable).toBe(false);
  expect(error.service).toBe('formsg');
  expect(error.message).toContain(reason);
}

function response(question: string, answer: string, id = generateObjectId()): FormResponse {
  return { _id: id, question, fieldType: 'textfield', answer };
}

function responsesFor(answers: Record<keyof FieldTitles, string>): FormResponse[] {
  return (Object.keys(answers) as Array<keyof FieldTitles>).map((key) =>
    response(defaultFieldTitles[key], answers[key]),
  );
}

describe('webhook authentication', () => {
  it('accepts a submission signed and encrypted as FormSG does', () => {
    const built = submission();
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const result = authenticate(delivery(built));

    expect(result.submissionId).toBe(built.submissionId);
    expect(result.submissionId).toMatch(/^[0-9a-f]{24}$/);
    expect(result.formId).toBe(FORM_ID);
    expect(result.version).toBe(1);
    expect(result.created).toBe(built.body.data.created);
    expect(readSiteRequest(result.responses, defaultFieldTitles)).toEqual(ANSWERS);
  });

  it('accepts any form when no form id is configured', () => {
    const otherFormId = generateObjectId();
    const built = submission({ formId: otherFormId });
    const { formId: _ignored, ...anyForm } = SETTINGS;
    const authenticate = createWebhookAuthenticator(anyForm);

    const result = authenticate(delivery(built));

    expect(result.formId).toBe(otherFormId);
  });

  it('rejects a delivery without a signature header as missing_signature', () => {
    const built = submission();
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const withoutHeader = () => authenticate({ signature: undefined, body: built.body });
    const blankHeader = () => authenticate({ signature: '  ', body: built.body });

    expectRejected(withoutHeader, 'missing_signature');
    expectRejected(blankHeader, 'missing_signature');
  });

  it.each([
    ['gibberish', 'not a signature'],
    ['a non-numeric time', 't=soon,s=$S,f=$F,v1=$V'],
    ['a missing part', 't=$T,s=$S,f=$F'],
    ['a repeated part', 't=$T,s=$S,f=$F,v1=$V,v1=$V'],
    ['an extra part', 't=$T,s=$S,f=$F,v1=$V,x=1'],
    ['an id that is not an ObjectId', 't=$T,s=123,f=$F,v1=$V'],
    ['a signature that is not base64', 't=$T,s=$S,f=$F,v1=not*base64'],
  ])('rejects a header with %s as malformed_signature', (_case, template) => {
    const built = submission();
    const header = built.headers['X-FormSG-Signature'];
    const part = (key: string) => header.split(',').find((p) => p.startsWith(`${key}=`));
    const garbled = template
      .replace('$T', part('t')?.slice(2) ?? '')
      .replace('$S', built.submissionId)
      .replace('$F', FORM_ID)
      .replaceAll('$V', part('v1')?.slice(3) ?? '');
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate({ signature: garbled, body: built.body });

    expectRejected(run, 'malformed_signature');
  });

  it('rejects a signature made for another URL as bad_signature', () => {
    const built = submission({ webhookUrl: 'https://elsewhere.example.com/formsg/webhook' });
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate(delivery(built));

    expectRejected(run, 'bad_signature');
  });

  it('rejects a test-mode signature when verifying against production keys', () => {
    const built = submission();
    const authenticate = createWebhookAuthenticator({ ...SETTINGS, mode: 'production' });

    const run = () => authenticate(delivery(built));

    expectRejected(run, 'bad_signature');
  });

  it('rejects a header whose signed parts were altered as bad_signature', () => {
    const built = submission();
    const header = built.headers['X-FormSG-Signature'];
    const forged = header.replace(`s=${built.submissionId}`, `s=${generateObjectId()}`);
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate({ signature: forged, body: built.body });

    expectRejected(run, 'bad_signature');
  });

  it('rejects a signature six minutes old as stale_signature', () => {
    const built = submission({ epoch: Date.now() - 6 * 60 * 1000 });
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate(delivery(built));

    expectRejected(run, 'stale_signature');
  });

  it('judges recency by the injected clock', () => {
    const epoch = Date.now();
    const built = submission({ epoch });
    const fourMinutesLater = createWebhookAuthenticator(SETTINGS, {
      now: () => epoch + 4 * 60 * 1000,
    });
    const sixMinutesEarlier = createWebhookAuthenticator(SETTINGS, {
      now: () => epoch - 6 * 60 * 1000,
    });
    const input = delivery(built);

    const accepted = fourMinutesLater(input);

    expect(accepted.submissionId).toBe(built.submissionId);
    expectRejected(() => sixMinutesEarlier(input), 'stale_signature');
  });

  it('rejects a genuine submission of another form as other_form', () => {
    const built = submission({ formId: generateObjectId() });
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate(delivery(built));

    expectRejected(run, 'other_form');
  });

  it.each([
    ['no body', undefined],
    ['a string body', 'hello'],
    ['a body without data', { formId: FORM_ID }],
    ['data without encrypted content', { data: { formId: FORM_ID, version: 1 } }],
    ['a version that is not a number', 'version:one'],
  ])('rejects %s as malformed_body', (_case, shape) => {
    const built = submission();
    const body = shape === 'version:one'
      ? { data: { ...built.body.data, version: 'one' } }
      : shape;
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate({ signature: built.headers['X-FormSG-Signature'], body });

    expectRejected(run, 'malformed_body');
  });

  it('rejects a body whose ids differ from the signed ones as mismatched_ids', () => {
    const signed = submission();
    const other = submission();
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const run = () => authenticate({ ...delivery(signed), body: other.body });

    expectRejected(run, 'mismatched_ids');
  });

  it('rejects content encrypted for another key as undecryptable', () => {
    const built = submission();
    const wrongKey = generateFormKeyPair().secretKey;
    const authenticate = createWebhookAuthenticator({ ...SETTINGS, secretKey: wrongKey });

    const run = () => authenticate(delivery(built));

    expectRejected(run, 'undecryptable');
  });

  it('rejects garbage content or a garbage key as undecryptable', () => {
    const built = submission();
    const signature = built.headers['X-FormSG-Signature'];
    const garbage = { data: { ...built.body.data, encryptedContent: '%%%;not:base64' } };
    const authenticate = createWebhookAuthenticator(SETTINGS);
    const badKey = createWebhookAuthenticator({ ...SETTINGS, secretKey: '***' });

    const garbageContent = () => authenticate({ signature, body: garbage });
    const garbageKey = () => badKey({ signature, body: built.body });

    expectRejected(garbageContent, 'undecryptable');
    expectRejected(garbageKey, 'undecryptable');
  });

  it('keeps the secret key and the signature out of rejection messages', () => {
    const built = submission({ webhookUrl: 'https://elsewhere.example.com/hook' });
    const signature = built.headers['X-FormSG-Signature'];
    const v1 = signature.split('v1=')[1] ?? '';
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const error = rejection(() => authenticate({ signature, body: built.body }));

    const told = `${error.message} ${String(error.stack)} ${JSON.stringify(error)}`;
    expect(v1.length).toBeGreaterThan(40);
    expect(told).not.toContain(v1);
    expect(told).not.toContain(KEYS.secretKey);
    expect(error.cause).toBeUndefined();
  });
});

describe('reading the site request', () => {
  it('maps every answer by its question title', () => {
    const responses = responsesFor(ANSWERS);

    const fields = readSiteRequest(responses, defaultFieldTitles);

    expect(fields).toEqual(ANSWERS);
  });

  it('matches titles after trimming and trims the answers', () => {
    const responses = [
      response('  Government E-mail ', ' jane@agency.gov.sg  '),
      response('Agency\t', ' Ministry of Examples '),
      response(' Repository Name', 'example-site '),
      response('Site Name ', '  Example Site'),
      response(' Point of Contact ', 'Jane Tan '),
    ];

    const fields = readSiteRequest(responses, defaultFieldTitles);

    expect(fields).toEqual({ ...ANSWERS, email: 'jane@agency.gov.sg' });
  });

  it('does not match a title that differs in more than surrounding spaces', () => {
    const responses = responsesFor(ANSWERS).map((r) =>
      r.question === 'Site Name' ? { ...r, question: 'site name' } : r,
    );

    const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));

    expect(error.field).toBe('Site Name');
    expect(error.message).toBe('this answer is missing');
  });

  it('reads an answer by field id when configured with the id', () => {
    const siteFieldId = generateObjectId();
    const responses = responsesFor(ANSWERS).map((r) =>
      r.question === 'Site Name' ? { ...r, _id: siteFieldId, question: 'Renamed question' } : r,
    );
    const titles = { ...defaultFieldTitles, siteName: siteFieldId };

    const fields = readSiteRequest(responses, titles);

    expect(fields.siteName).toBe('Example Site');
  });

  it('keeps the case of the e-mail address', () => {
    const responses = responsesFor(ANSWERS);

    const email = readRequesterEmail(responses, defaultFieldTitles);

    expect(email).toBe('Jane_Tan@Agency.gov.sg');
  });

  it.each([
    ['missing', undefined, 'this answer is missing'],
    ['empty', '   ', 'this answer is empty'],
  ])('names the question whose answer is %s', (_case, answer, reason) => {
    const responses = responsesFor(ANSWERS).filter((r) => r.question !== 'Agency');
    if (answer !== undefined) responses.push(response('Agency', answer));

    const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));

    expect(error.field).toBe('Agency');
    expect(error.message).toBe(reason);
    expect(error.retryable).toBe(false);
  });

  it.each(['jane', 'jane@', '@agency.gov.sg', 'jane@agency', 'ja ne@agency.gov.sg', 'a@b@c.sg'])(
    'rejects the implausible e-mail address %j',
    (email) => {
      const responses = responsesFor({ ...ANSWERS, email });

      const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));
      const requester = readRequesterEmail(responses, defaultFieldTitles);

      expect(error.field).toBe('Government E-mail');
      expect(requester).toBeNull();
    },
  );

  it('still finds a valid requester e-mail when another answer is wrong', () => {
    const responses = responsesFor({ ...ANSWERS, repoName: 'bad name!' });

    const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));
    const requester = readRequesterEmail(responses, defaultFieldTitles);

    expect(error.field).toBe('Repository Name');
    expect(requester).toBe(ANSWERS.email);
  });

  it.each(['siteName', 'agency', 'pointOfContact'] as const)(
    'rejects a %s longer than 200 characters',
    (key) => {
      const responses = responsesFor({ ...ANSWERS, [key]: 'x'.repeat(201) });
      const atLimit = responsesFor({ ...ANSWERS, [key]: 'x'.repeat(200) });

      const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));
      const accepted = readSiteRequest(atLimit, defaultFieldTitles);

      expect(error.field).toBe(defaultFieldTitles[key]);
      expect(accepted[key]).toHaveLength(200);
    },
  );

  it('rejects a site name that spans lines', () => {
    const responses = responsesFor({ ...ANSWERS, siteName: 'Example\nBcc: someone@else.com' });

    const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));

    expect(error.field).toBe('Site Name');
  });

  it('joins a checkbox answer and refuses a table answer', () => {
    const base = responsesFor(ANSWERS).filter((r) => r.question !== 'Agency');
    const agency = { _id: generateObjectId(), question: 'Agency' };
    const checkbox = [...base, { ...agency, fieldType: 'checkbox', answerArray: ['A', 'B'] }];
    const table = [...base, { ...agency, fieldType: 'table', answerArray: [['A']] }];

    const fields = readSiteRequest(checkbox, defaultFieldTitles);
    const error = catchValidation(() => readSiteRequest(table, defaultFieldTitles));

    expect(fields.agency).toBe('A, B');
    expect(error.field).toBe('Agency');
  });
});

describe('repository name rules', () => {
  it.each(['a', 'my-site', 'My_Site.v2', 'x'.repeat(100), '.github', 'site.gitx', '_'])(
    'accepts %j',
    (name) => {
      const reason = validateRepoName(name);

      expect(reason).toBeNull();
    },
  );

  it.each([
    ['an empty name', '', 'empty'],
    ['a name over 100 characters', 'x'.repeat(101), '100 characters'],
    ['a space', 'my site', 'only contain'],
    ['a slash', 'org/site', 'only contain'],
    ['a non-ASCII letter', 'café', 'only contain'],
    ['a single dot', '.', '"." or ".."'],
    ['two dots', '..', '"." or ".."'],
    ['a .git ending', 'site.git', '.git'],
    ['a .GIT ending in capitals', 'site.GIT', '.git'],
  ])('rejects %s', (_case, name, words) => {
    const reason = validateRepoName(name);

    expect(reason).toContain(words);
  });

  it('reports the repository rule through the form question', () => {
    const responses = responsesFor({ ...ANSWERS, repoName: 'site.git' });

    const error = catchValidation(() => readSiteRequest(responses, defaultFieldTitles));

    expect(error.field).toBe('Repository Name');
    expect(error.message).toBe(validateRepoName('site.git'));
  });
});

describe('test submissions', () => {
  it('encrypts raw responses given as an array unchanged', () => {
    const responses = responsesFor(ANSWERS);
    const built = submission({ answers: responses });
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const result = authenticate(delivery(built));

    expect(result.responses).toEqual(responses);
  });

  it('uses the given submission id and custom titles', () => {
    const submissionId = generateObjectId();
    const titles = { ...defaultFieldTitles, repoName: 'GitHub repository' };
    const built = submission({ submissionId, titles });
    const authenticate = createWebhookAuthenticator(SETTINGS);

    const result = authenticate(delivery(built));

    expect(result.submissionId).toBe(submissionId);
    expect(readSiteRequest(result.responses, titles).repoName).toBe('example-site');
  });
});

function catchValidation(run: () => unknown): ValidationError {
  try {
    run();
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error('the answers were accepted');
}
