/**
 * The e-mails the service sends, as pure functions of their inputs. Each template reads only the
 * fields it declares, escapes every one of them in the HTML, keeps reasons to one short line (no
 * stack traces), and states only what its inputs say happened.
 */

/** A rendered e-mail. */
export interface MailContent {
  subject: string;
  text: string;
  html: string;
}

/** Longest reason we quote; longer ones are cut with an ellipsis. */
const MAX_REASON_LENGTH = 300;

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (character) => HTML_ESCAPES[character] ?? character);
}

export interface NotRegisteredMailInput {
  email: string;
  siteName: string;
  /** Where people can ask for help; the platform administrator alone is named when absent. */
  supportEmail?: string;
}

/** To a requester whose address is not a registered user of the platform. */
export function notRegisteredMail(input: NotRegisteredMailInput): MailContent {
  const email = oneLine(input.email);
  const siteName = oneLine(input.siteName);
  const support = input.supportEmail === undefined ? undefined : oneLine(input.supportEmail);

  const subject = `We could not create ${siteName}: you are not a registered user`;

  const howTo = support === undefined
    ? "To become one, ask your agency's platform administrator to register your address."
    : "To become one, ask your agency's platform administrator to register your address, " +
      `or write to ${support}.`;
  const text = [
    'Hello,',
    '',
    `We received a request to create the site "${siteName}" from ${email}.`,
    'This address is not a registered user of the platform, so we did not create the site.',
    '',
    howTo,
    'Once you are registered, please submit the form again.',
  ].join('\n');

  const supportHtml = support === undefined
    ? ''
    : `, or write to <a href="mailto:${escapeHtml(support)}">${escapeHtml(support)}</a>`;
  const html = page(subject, [
    paragraph('Hello,'),
    paragraph(
      `We received a request to create the site <strong>${escapeHtml(siteName)}</strong> ` +
        `from ${escapeHtml(email)}. This address is not a registered user of the platform, ` +
        'so we did not create the site.',
    ),
    paragraph(
      "To become one, ask your agency's platform administrator to register your address" +
        `${supportHtml}. Once you are registered, please submit the form again.`,
    ),
  ]);

  return { subject, text, html };
}

export interface InvalidRequestMailInput {
  siteName?: string;
  /** The form question whose answer was wrong. */
  field: string;
  /** Why, in plain words. */
  reason: string;
}

/** To a requester whose answers broke a rule. */
export function invalidRequestMail(input: InvalidRequestMailInput): MailContent {
  const siteName = input.siteName === undefined ? undefined : oneLine(input.siteName);
  const field = oneLine(input.field);
  const reason = shortReason(input.reason);

  const subject = siteName === undefined
    ? 'Your site request needs a correction'
    : `Your request for ${siteName} needs a correction`;

  const text = [
    'Hello,',
    '',
    'We could not accept your site request because one answer needs to be corrected.',
    '',
    `Question: ${field}`,
    `Problem: ${reason}`,
    '',
    'Please submit the form again with a corrected answer. Nothing was created.',
  ].join('\n');

  const html = page(subject, [
    paragraph('Hello,'),
    paragraph(
      'We could not accept your site request because one answer needs to be corrected.',
    ),
    definitionList([
      ['Question', escapeHtml(field)],
      ['Problem', escapeHtml(reason)],
    ]),
    paragraph('Please submit the form again with a corrected answer. Nothing was created.'),
  ]);

  return { subject, text, html };
}

export interface SiteReadyMailInput {
  siteName: string;
  repoName: string;
  repoUrl: string;
  stagingUrl: string;
  productionUrl: string;
}

/** To a requester whose site now exists. */
export function siteReadyMail(input: SiteReadyMailInput): MailContent {
  const siteName = oneLine(input.siteName);
  const repoName = oneLine(input.repoName);
  const repoUrl = oneLine(input.repoUrl);
  const stagingUrl = oneLine(input.stagingUrl);
  const productionUrl = oneLine(input.productionUrl);

  const subject = `Your site ${siteName} is ready`;

  const text = [
    'Hello,',
    '',
    `Your site "${siteName}" has been created.`,
    '',
    `Repository: ${repoName} (${repoUrl})`,
    `Staging: ${stagingUrl}`,
    `Production: ${productionUrl}`,
    '',
    'Changes pushed to the staging branch appear on the staging address first.',
  ].join('\n');

  const html = page(subject, [
    paragraph('Hello,'),
    paragraph(`Your site <strong>${escapeHtml(siteName)}</strong> has been created.`),
    definitionList([
      ['Repository', link(repoUrl, repoName)],
      ['Staging', link(stagingUrl, stagingUrl)],
      ['Production', link(productionUrl, productionUrl)],
    ]),
    paragraph('Changes pushed to the staging branch appear on the staging address first.'),
  ]);

  return { subject, text, html };
}

export interface SiteFailedMailInput {
  siteName: string;
  /** What we were doing, in plain words, e.g. 'creating the GitHub repository'. */
  failedStep: string;
  reason: string;
  /** What was cleaned up, in plain words. Only these are claimed as undone. */
  undone: string[];
  /** Whether the operations team was told. */
  opsNotified: boolean;
}

/** To a requester whose site could not be created. */
export function siteFailedMail(input: SiteFailedMailInput): MailContent {
  const siteName = oneLine(input.siteName);
  const failedStep = oneLine(input.failedStep);
  const reason = shortReason(input.reason);
  const undone = input.undone.map(oneLine).filter((item) => item !== '');

  const subject = `We could not create your site ${siteName}`;

  const undoneText = undone.length === 0
    ? []
    : ['', 'We undid what had already been done:', ...undone.map((item) => `- ${item}`)];
  const opsText = input.opsNotified
    ? ['', 'Our operations team has been told and will look into it.']
    : [];
  const text = [
    'Hello,',
    '',
    `Something went wrong while ${failedStep} for your site "${siteName}".`,
    `Reason: ${reason}`,
    ...undoneText,
    ...opsText,
    '',
    'You can submit the form again. If it keeps failing, please contact support.',
  ].join('\n');

  const undoneHtml = undone.length === 0
    ? []
    : [
        paragraph('We undid what had already been done:'),
        `<ul>${undone.map((item) => `<li>${escapeHtml(item)}</li>`).join('')}</ul>`,
      ];
  const opsHtml = input.opsNotified
    ? [paragraph('Our operations team has been told and will look into it.')]
    : [];
  const html = page(subject, [
    paragraph('Hello,'),
    paragraph(
      `Something went wrong while ${escapeHtml(failedStep)} for your site ` +
        `<strong>${escapeHtml(siteName)}</strong>.`,
    ),
    paragraph(`Reason: ${escapeHtml(reason)}`),
    ...undoneHtml,
    ...opsHtml,
    paragraph('You can submit the form again. If it keeps failing, please contact support.'),
  ]);

  return { subject, text, html };
}

/** Something a failed run created and could not remove. */
export interface LeftBehind {
  /** What it is, e.g. 'GitHub repository'. */
  kind: string;
  id: string;
  /** Where to find it, e.g. an organisation or a region. */
  where: string;
}

export interface CleanupNeededMailInput {
  runId: string;
  siteName: string;
  failedStep: string;
  reason: string;
  leftBehind: LeftBehind[];
}

/** To the operations address: a failed run left things behind that need removing by hand. */
export function cleanupNeededMail(input: CleanupNeededMailInput): MailContent {
  const runId = oneLine(input.runId);
  const siteName = oneLine(input.siteName);
  const failedStep = oneLine(input.failedStep);
  const reason = shortReason(input.reason);
  const leftBehind = input.leftBehind.map((item) => ({
    kind: oneLine(item.kind),
    id: oneLine(item.id),
    where: oneLine(item.where),
  }));

  const subject = `Clean-up needed after run ${runId} (${siteName})`;

  const text = [
    `Run ${runId} for the site "${siteName}" failed while ${failedStep}.`,
    `Reason: ${reason}`,
    '',
    'These were left behind and need removing by hand:',
    ...leftBehind.map((item) => `- ${item.kind} ${item.id} in ${item.where}`),
  ].join('\n');

  const rows = leftBehind.map(
    (item) =>
      `<tr><td>${escapeHtml(item.kind)}</td><td><code>${escapeHtml(item.id)}</code></td>` +
      `<td>${escapeHtml(item.where)}</td></tr>`,
  );
  const html = page(subject, [
    paragraph(
      `Run <code>${escapeHtml(runId)}</code> for the site ` +
        `<strong>${escapeHtml(siteName)}</strong> failed while ${escapeHtml(failedStep)}.`,
    ),
    paragraph(`Reason: ${escapeHtml(reason)}`),
    paragraph('These were left behind and need removing by hand:'),
    '<table><thead><tr><th>Kind</th><th>Id</th><th>Where</th></tr></thead>' +
      `<tbody>${rows.join('')}</tbody></table>`,
  ]);

  return { subject, text, html };
}

/** Collapses line breaks and runs of spaces, so a value cannot add lines or headers. */
function oneLine(value: string): string {
  return value.replace(/\s+/g, ' ').trim();
}

/** The first line of a reason, cut to a readable length: never a stack trace. */
function shortReason(reason: string): string {
  const firstLine = (reason.split(/\r?\n/)[0] ?? '').trim();
  const line = oneLine(firstLine);
  if (line === '') return 'no reason was recorded';
  if (line.length <= MAX_REASON_LENGTH) return line;

  return `${line.slice(0, MAX_REASON_LENGTH - 1)}…`;
}

/** A link when the address is http(s), else the escaped text alone. */
function link(url: string, label: string): string {
  if (!/^https?:\/\//i.test(url)) return escapeHtml(label);

  return `<a href="${escapeHtml(url)}">${escapeHtml(label)}</a>`;
}

/** Takes trusted markup only: callers escape every value before it gets here. */
function paragraph(markup: string): string {
  return `<p>${markup}</p>`;
}

/** Takes trusted markup only: callers escape every value before it gets here. */
function definitionList(entries: Array<[string, string]>): string {
  const items = entries.map(([term, markup]) => `<dt>${term}</dt><dd>${markup}</dd>`);

  return `<dl>${items.join('')}</dl>`;
}

function page(title: string, blocks: string[]): string {
  return [
    '<!doctype html>',
    '<html><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title></head>`,
    '<body style="font-family: sans-serif; line-height: 1.5">',
    ...blocks,
    '</body></html>',
  ].join('\n');
}
