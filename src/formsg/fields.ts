/**
 * Maps a decrypted submission's answers onto a site request, and checks every answer before
 * anything outside is touched: GitHub silently rewrites a bad repository name instead of
 * refusing it, so the rules are enforced here.
 */

import { ValidationError } from '../errors.js';
import type { FormResponse } from './webhook.js';

/** The form's question titles (or field ids) for each answer we need. */
export interface FieldTitles {
  email: string;
  agency: string;
  repoName: string;
  siteName: string;
  pointOfContact: string;
}

/** The question titles of the site request form as published. */
export const defaultFieldTitles: FieldTitles = {
  email: 'Government E-mail',
  agency: 'Agency',
  repoName: 'Repository Name',
  siteName: 'Site Name',
  pointOfContact: 'Point of Contact',
};

/** A site request whose answers all passed their checks. Values are trimmed. */
export interface SiteRequestFields {
  email: string;
  agency: string;
  repoName: string;
  siteName: string;
  pointOfContact: string;
}

/** Longest site name, agency or point of contact we accept. */
export const MAX_TEXT_LENGTH = 200;

/** GitHub's limit on repository names. */
export const MAX_REPO_NAME_LENGTH = 100;

const REPO_NAME_CHARACTERS = /^[A-Za-z0-9._-]+$/;
// C0 and C1 control characters, line breaks included: these answers end up in mail subjects.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
const EMAIL_LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const TOP_LEVEL_DOMAIN = /^[A-Za-z]{2,63}$/;

/**
 * Reads the answers by question title (trimmed, exact) or by field id.
 *
 * @throws {ValidationError} naming the question title, with the reason in plain words, for the
 *   first answer that is missing or breaks a rule.
 */
export function readSiteRequest(
  responses: FormResponse[],
  titles: FieldTitles,
): SiteRequestFields {
  const email = requireText(responses, titles.email);
  if (!isPlausibleEmail(email)) {
    throw new ValidationError(titles.email, 'this is not a valid e-mail address');
  }

  const agency = requireShortText(responses, titles.agency);

  const repoName = requireText(responses, titles.repoName);
  const repoNameProblem = validateRepoName(repoName);
  if (repoNameProblem !== null) throw new ValidationError(titles.repoName, repoNameProblem);

  const siteName = requireShortText(responses, titles.siteName);
  const pointOfContact = requireShortText(responses, titles.pointOfContact);

  return { email, agency, repoName, siteName, pointOfContact };
}

/**
 * The requester's e-mail (trimmed, case kept) when it is present and valid, else null, so we can
 * still tell them what was wrong with the rest of the form.
 */
export function readRequesterEmail(
  responses: FormResponse[],
  titles: FieldTitles,
): string | null {
  const answer = findAnswer(responses, titles.email);
  if (answer.kind !== 'text') return null;

  const email = answer.value.trim();

  return isPlausibleEmail(email) ? email : null;
}

/**
 * Checks a repository name against GitHub's rules.
 *
 * @returns null when the name is valid, else the reason in plain words.
 */
export function validateRepoName(name: string): string | null {
  if (name.length === 0) return 'the repository name is empty';

  if (name.length > MAX_REPO_NAME_LENGTH) {
    return `the repository name must be at most ${MAX_REPO_NAME_LENGTH} characters long`;
  }

  if (!REPO_NAME_CHARACTERS.test(name)) {
    return 'the repository name may only contain letters, digits, ".", "-" and "_"';
  }

  if (name === '.' || name === '..') return 'the repository name cannot be "." or ".."';

  if (name.toLowerCase().endsWith('.git')) {
    return 'the repository name cannot end in ".git"';
  }

  return null;
}

/**
 * A plausible address: one `@`, a local part of allowed characters, a domain of at least two
 * labels ending in a letters-only top-level domain. Comparisons elsewhere are case-insensitive.
 */
export function isPlausibleEmail(email: string): boolean {
  if (email.length > 254) return false;

  const at = email.lastIndexOf('@');
  if (at <= 0 || email.indexOf('@') !== at) return false;

  const local = email.slice(0, at);
  const labels = email.slice(at + 1).split('.');
  if (!EMAIL_LOCAL_PART.test(local)) return false;
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false;

  const topLevel = labels[labels.length - 1] ?? '';
  if (labels.length < 2 || !TOP_LEVEL_DOMAIN.test(topLevel)) return false;

  return labels.every((label) => DOMAIN_LABEL.test(label));
}

type Answer =
  | { kind: 'missing' }
  | { kind: 'not_text' }
  | { kind: 'text'; value: string };

/** Finds the answer to a question, by trimmed title first, then by field id. */
function findAnswer(responses: FormResponse[], titleOrId: string): Answer {
  const wanted = titleOrId.trim();
  const response =
    responses.find((candidate) => candidate.question.trim() === wanted) ??
    responses.find((candidate) => candidate._id === wanted);
  if (response === undefined) return { kind: 'missing' };

  if (typeof response.answer === 'string') return { kind: 'text', value: response.answer };

  // A checkbox answer reads as a list; a table (rows of cells) has no single text.
  const list = response.answerArray;
  if (list === undefined) return { kind: 'missing' };
  if (!list.every((item): item is string => typeof item === 'string')) {
    return { kind: 'not_text' };
  }

  return { kind: 'text', value: list.join(', ') };
}

function requireText(responses: FormResponse[], title: string): string {
  const answer = findAnswer(responses, title);
  if (answer.kind === 'missing') throw new ValidationError(title, 'this answer is missing');
  if (answer.kind === 'not_text') {
    throw new ValidationError(title, 'this answer must be text, not a table');
  }

  const value = answer.value.trim();
  if (value === '') throw new ValidationError(title, 'this answer is empty');

  return value;
}

function requireShortText(responses: FormResponse[], title: string): string {
  const value = requireText(responses, title);

  if (value.length > MAX_TEXT_LENGTH) {
    throw new ValidationError(
      title,
      `this answer must be at most ${MAX_TEXT_LENGTH} characters long`,
    );
  }

  if (CONTROL_CHARACTERS.test(value)) {
    throw new ValidationError(title, 'this answer must be a single line of plain text');
  }

  return value;
}
