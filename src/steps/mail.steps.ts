/**
 * The outcome e-mails. Each one is recorded in `mails` once sent, so a step that runs again
 * after a crash does not send the same outcome twice.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { findMail, recordMail } from '../../db/runs.repository.js';
import type {
  MailKind,
  SiteCreationContext,
  StepInput,
} from '../../machines/site-creation.machine.js';
import { PermanentError } from '../errors.js';
import type { Mailer } from '../mail/mailer.js';
import {
  cleanupNeededMail,
  invalidRequestMail,
  notRegisteredMail,
  siteFailedMail,
  siteReadyMail,
  type MailContent,
} from '../mail/templates.js';
import { describeError, describeStep, describeUndone } from './describe.js';
import { step } from './step.js';

export interface MailStepDependencies {
  db: Kysely<Database>;
  mailer: Mailer;
  supportEmail?: string;
}

/** The `sendMail` actor: renders the message for `kind` and sends it at most once per run. */
export function createMailStep(deps: MailStepDependencies) {
  return step<StepInput & { kind: MailKind }, void>(async (input, signal) => {
    const { context } = input;
    // An operator's rollback of a run that already failed tells the requester nothing new:
    // they heard the outcome from the go that failed.
    if (input.kind === 'failure' && context.resumeMode === 'rollback') return;

    // One outcome mail per kind per go: an operator's retry may fail or succeed anew.
    const kind = context.generation === 0 ? input.kind : `${input.kind}#${context.generation}`;
    if (await findMail(deps.db, context.runId, kind)) return;

    const recipient = recipientOf(context, input.kind);
    const content = renderMail(context, input.kind, deps.supportEmail);
    const messageId = `<${context.runId}.${kind}@site-orchestrator.local>`;
    await deps.mailer.send({ to: recipient, ...content, messageId }, signal);
    await recordMail(deps.db, { runId: context.runId, kind, messageId, recipient });
  });
}

function recipientOf(context: SiteCreationContext, kind: MailKind): string {
  const recipient = kind === 'ops' ? context.opsEmail : context.requesterEmail;
  if (!recipient) {
    throw new PermanentError(`no recipient for the ${kind} e-mail`, { service: 'smtp' });
  }

  return recipient;
}

/** Renders the e-mail of one outcome from the run's context. */
export function renderMail(
  context: SiteCreationContext,
  kind: MailKind,
  supportEmail?: string,
): MailContent {
  const siteName = context.request?.siteName ?? 'your site';
  const failure = context.failure;

  switch (kind) {
    case 'success': {
      const repo = context.repo;
      const app = context.app;
      if (!repo || !app || !context.request) {
        throw new PermanentError('the run has no site to announce', { service: 'orchestrator' });
      }

      return siteReadyMail({
        siteName,
        repoName: repo.fullName,
        repoUrl: repo.url,
        stagingUrl: `https://staging.${app.defaultDomain}`,
        productionUrl: `https://master.${app.defaultDomain}`,
      });
    }
    case 'rejection': {
      if (failure?.error.name === 'ValidationError') {
        return invalidRequestMail({
          ...(context.request ? { siteName } : {}),
          field: failure.error.field ?? 'an answer',
          reason: failure.error.message,
        });
      }

      return notRegisteredMail({
        email: context.requesterEmail ?? '',
        siteName,
        ...(supportEmail ? { supportEmail } : {}),
      });
    }
    case 'failure': {
      const opsMailFailed = context.undelivered.some((mail) => mail.kind === 'ops');
      const opsNotified =
        context.leftBehind.length > 0 && context.opsEmail !== null && !opsMailFailed;

      return siteFailedMail({
        siteName,
        failedStep: failure ? describeStep(failure.step) : 'creating your site',
        reason: failure ? describeError(failure.error) : 'an unexpected error',
        undone: context.undone.map(describeUndone),
        opsNotified,
      });
    }
    case 'ops':
      return cleanupNeededMail({
        runId: context.runId,
        siteName,
        failedStep: failure ? describeStep(failure.step) : 'creating the site',
        reason: failure ? `${failure.error.name}: ${failure.error.message}` : 'unknown',
        leftBehind: context.leftBehind.map((item) => ({
          kind: item.kind,
          id: item.id,
          where: `${item.where} (undo failed: ${item.error.name})`,
        })),
      });
    default: {
      const unknownKind: never = kind;
      throw new Error(`unknown mail kind ${String(unknownKind)}`);
    }
  }
}
