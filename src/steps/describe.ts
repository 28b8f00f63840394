/**
 * Plain words for steps and errors, for e-mails and the dashboard. No stack traces, no
 * upstream bodies, no secrets: only what a requester can act on.
 */
import type { ErrorRecord } from '../errors.js';
import type { StepName } from '../../machines/site-creation.machine.js';

const STEP_WORDS: Record<StepName | 'cancelled', string> = {
  authenticate: 'checking the form submission',
  validateRequest: 'reading your answers',
  findUser: 'looking up your account',
  createSite: 'recording your site',
  createRepository: 'creating the GitHub repository',
  waitForRepoContent: 'waiting for the GitHub repository to be ready',
  ensureRepoBranches: 'creating the staging and master branches',
  grantTeam: 'giving the team access to the repository',
  recordRepo: 'recording the repository',
  createApp: 'creating the Amplify app',
  ensureAppBranches: 'connecting the branches to Amplify',
  startBuilds: 'starting the first builds',
  recordDeployment: 'recording the deployment',
  markSiteReady: 'marking the site as ready',
  reopenSite: 'reopening the request for another try',
  sendSuccessMail: 'sending the confirmation e-mail',
  deleteApp: 'removing the Amplify app',
  deleteRepo: 'removing the GitHub repository',
  markSiteFailed: 'recording the failure',
  sendOpsMail: 'telling the operations team',
  sendFailureMail: 'sending the failure e-mail',
  sendRejectionMail: 'sending the rejection e-mail',
  cancelled: 'creating your site (an operator cancelled the request)',
};

export function describeStep(step: StepName | 'cancelled'): string {
  return STEP_WORDS[step];
}

const SERVICE_WORDS: Record<ErrorRecord['service'], string> = {
  github: 'GitHub',
  amplify: 'AWS Amplify',
  smtp: 'the mail server',
  database: 'our database',
  formsg: 'FormSG',
  orchestrator: 'our service',
};

/** One sentence a requester can read. */
export function describeError(error: ErrorRecord): string {
  if (error.name === 'NameTakenError' || error.name === 'ValidationError') return error.message;
  if (error.name === 'CancelledError') return 'An operator cancelled the request.';

  const service = SERVICE_WORDS[error.service];
  if (error.retryable) {
    return `${service} was unavailable for too long; no retry succeeded.`;
  }
  if (error.status === 401 || error.status === 403) {
    return `${service} refused our credentials.`;
  }

  return `${service} refused the request (${error.name}).`;
}

/** Plain words for what an undo removed. */
export function describeUndone(what: string): string {
  if (what === 'amplify-app') return 'the Amplify app was deleted';
  if (what === 'repository') return 'the GitHub repository was deleted';

  return what;
}
