/**
 * The real implementations of the machine's actors, bound to the database, GitHub, Amplify and
 * the mailer. Each step is safe to run again with the same input: XState restarts an actor that
 * was in flight when a run is restored, so every step runs at least once.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { findUserByEmail } from '../../db/users.repository.js';
import { insertSite, setSiteStatus } from '../../db/sites.repository.js';
import { deleteRepoBySite, upsertRepo } from '../../db/repos.repository.js';
import {
  deleteDeploymentBySite,
  upsertDeployment,
} from '../../db/deployments.repository.js';
import type {
  AuthenticateOutput,
  CreatedApp,
  CreatedRepo,
  FindUserOutput,
  SiteCreationContext,
  SiteCreationMachine,
  SleepInput,
  StepInput,
  UndoOutput,
  ValidateOutput,
} from '../../machines/site-creation.machine.js';
import type { AmplifyGateway } from '../amplify.js';
import { NameTakenError, PermanentError, TransientError, ValidationError } from '../errors.js';
import { toErrorRecord } from '../errors.js';
import type { FieldTitles } from '../formsg/fields.js';
import { readRequesterEmail, readSiteRequest } from '../formsg/fields.js';
import type { FormResponse, WebhookInput, AuthenticatedSubmission } from '../formsg/webhook.js';
import type { GithubClient } from '../github.js';
import type { Logger } from '../logger.js';
import type { Mailer } from '../mail/mailer.js';
import { createMailStep } from './mail.steps.js';
import { sleepUntil, step } from './step.js';
import { fromPromise } from 'xstate';

/** Tag key on Amplify apps and marker in repository descriptions: the run that created them. */
export const RUN_TAG = 'site-platform-run';

export interface StepDependencies {
  db: Kysely<Database>;
  github: GithubClient;
  amplify: AmplifyGateway;
  mailer: Mailer;
  logger: Logger;
  authenticate: (input: WebhookInput) => AuthenticatedSubmission;
  fieldTitles: FieldTitles;
  /** Handed to Amplify so it can read the repository. */
  githubAccessToken: string;
  buildSpec?: string;
  environmentVariables: Record<string, string>;
  templateReadyTimeoutMs: number;
  /** How often to look whether a template repository has filled in. */
  templatePollMs?: number;
  supportEmail?: string;
  opsEmail?: string;
}

type Actors = Parameters<SiteCreationMachine['provide']>[0]['actors'];

/** Builds every actor the machine names, for `siteCreationMachine.provide({ actors })`. */
export function createSteps(deps: StepDependencies): NonNullable<Actors> {
  const { db, github, amplify } = deps;

  return {
    authenticate: step(async ({ context }): Promise<AuthenticateOutput> => {
      const delivery = context.delivery;
      if (!delivery) {
        throw new PermanentError('the webhook delivery is no longer available', {
          service: 'orchestrator',
        });
      }
      const submission = deps.authenticate(delivery);

      return {
        submissionId: submission.submissionId,
        formId: submission.formId,
        responses: submission.responses,
      };
    }),

    validateRequest: step(async ({ context }): Promise<ValidateOutput> => {
      const responses = (context.responses ?? []) as FormResponse[];
      try {
        const request = readSiteRequest(responses, deps.fieldTitles);

        return { request };
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;

        return {
          invalid: toErrorRecord(error),
          requesterEmail: readRequesterEmail(responses, deps.fieldTitles),
        };
      }
    }),

    findUser: step(async ({ context }): Promise<FindUserOutput> => {
      const user = await findUserByEmail(db, requestOf(context).email);

      return { userId: user ? Number(user.id) : null };
    }),

    createSite: step(async ({ context }) => {
      const request = requestOf(context);
      const site = await insertSite(db, {
        name: request.siteName,
        creatorId: context.userId ?? missing('userId'),
        submissionId: context.submissionId ?? missing('submissionId'),
        agency: request.agency,
        pointOfContact: request.pointOfContact,
      });

      return { siteId: Number(site.id) };
    }),

    createRepository: step(async ({ context }, signal): Promise<CreatedRepo> => {
      const request = requestOf(context);
      const marker = repoMarker(context.runId);
      const description = `${request.siteName} [${marker}]`;

      try {
        const repo = await github.createRepository({ name: request.repoName, description, signal });

        return toCreatedRepo(repo);
      } catch (error) {
        if (!(error instanceof NameTakenError)) throw error;

        // A repository with our marker is one this run made before a crash or timeout.
        const existing = await github.getRepository(request.repoName, signal);
        if (existing?.description?.includes(marker)) return toCreatedRepo(existing);

        throw new NameTakenError(
          `A repository named "${request.repoName}" already exists in ${github.org}; ` +
            'please choose another repository name.',
          { service: 'github', status: 422, code: 'name_taken', cause: error },
        );
      }
    }),

    waitForRepoContent: step(
      async ({ context }, signal) => {
        const repo = repoOf(context);
        const deadline = Date.now() + deps.templateReadyTimeoutMs;
        const pollMs = deps.templatePollMs ?? 1_000;

        for (;;) {
          const sha = await github.getBranchSha(repo.name, repo.defaultBranch, signal);
          if (sha !== null) return;
          if (Date.now() + pollMs > deadline) {
            throw new TransientError('the repository content is not ready yet', {
              service: 'github',
              code: 'RepositoryNotReady',
            });
          }
          await sleepUntil(Date.now() + pollMs, signal);
        }
      },
      { timeoutMs: deps.templateReadyTimeoutMs + 10_000 },
    ),

    ensureRepoBranches: step(async ({ context }, signal) => {
      const repo = repoOf(context);
      const sha = await github.getBranchSha(repo.name, repo.defaultBranch, signal);
      if (sha === null) {
        throw new TransientError('the default branch has no commit yet', {
          service: 'github',
          code: 'RepositoryNotReady',
        });
      }

      for (const branch of ['staging', 'master']) {
        if (branch !== repo.defaultBranch) {
          await github.ensureBranch(repo.name, branch, sha, signal);
        }
      }
    }),

    grantTeam: step(async ({ context }, signal) => {
      const team = context.team ?? missing('team');
      await github.grantTeam(repoOf(context).name, team, 'push', signal);
    }),

    recordRepo: step(async ({ context }) => {
      const repo = repoOf(context);
      await upsertRepo(db, {
        siteId: context.siteId ?? missing('siteId'),
        name: repo.name,
        url: repo.url,
      });
    }),

    createApp: step(async ({ context }, signal): Promise<CreatedApp> => {
      const repo = repoOf(context);
      const tags = { [RUN_TAG]: context.runId };

      // An app tagged with this run is one this run made before a crash or timeout.
      const [existing] = await amplify.findAppsByTags(tags, signal);
      if (existing) return { appId: existing.appId, defaultDomain: existing.defaultDomain };

      const app = await amplify.createApp({
        name: repo.name,
        repository: repo.url,
        accessToken: deps.githubAccessToken,
        ...(deps.buildSpec ? { buildSpec: deps.buildSpec } : {}),
        environmentVariables: deps.environmentVariables,
        tags,
        signal,
      });

      // Amplify has no idempotency token: a creation sent by an earlier go that died with the
      // call in flight may land beside ours. Ours is the one kept; the rest are deleted.
      const twins = await amplify.findAppsByTags(tags, signal);
      for (const twin of twins) {
        if (twin.appId !== app.appId) await amplify.deleteApp(twin.appId, signal);
      }

      return { appId: app.appId, defaultDomain: app.defaultDomain };
    }),

    ensureAppBranches: step(async ({ context }, signal) => {
      const app = appOf(context);
      await amplify.ensureBranch(app.appId, 'master', 'PRODUCTION', signal);
      await amplify.ensureBranch(app.appId, 'staging', 'DEVELOPMENT', signal);
    }),

    startBuilds: step(async ({ context }, signal) => {
      const app = appOf(context);
      await amplify.ensureReleaseJob(app.appId, 'master', signal);
      await amplify.ensureReleaseJob(app.appId, 'staging', signal);
    }),

    recordDeployment: step(async ({ context }) => {
      const app = appOf(context);
      await upsertDeployment(db, {
        siteId: context.siteId ?? missing('siteId'),
        hostingId: app.appId,
        stagingUrl: siteUrls(app).staging,
        productionUrl: siteUrls(app).production,
      });
    }),

    markSiteReady: step(async ({ context }) => {
      await setSiteStatus(db, context.siteId ?? missing('siteId'), {
        siteStatus: 'LAUNCH',
        jobStatus: 'READY',
      });
    }),

    reopenSite: step(async ({ context }) => {
      if (context.siteId === null) return;
      await setSiteStatus(db, context.siteId, { siteStatus: 'INIT', jobStatus: 'RUNNING' });
    }),

    deleteApp: step(async ({ context }, signal): Promise<UndoOutput> => {
      // Every app tagged with this run, which also catches one whose creation answered late.
      const ids = new Set<string>();
      if (context.app) ids.add(context.app.appId);
      const tagged = await amplify.findAppsByTags({ [RUN_TAG]: context.runId }, signal);
      for (const app of tagged) ids.add(app.appId);

      let removed = false;
      for (const appId of ids) {
        if (await amplify.deleteApp(appId, signal)) removed = true;
      }
      if (context.siteId !== null) await deleteDeploymentBySite(db, context.siteId);

      return { removed };
    }),

    deleteRepo: step(async ({ context }, signal): Promise<UndoOutput> => {
      let removed = false;
      const name = context.repo?.name ?? context.request?.repoName;
      if (name) {
        // Only a repository carrying this run's marker is ours to delete.
        const repo = await github.getRepository(name, signal);
        if (repo?.description?.includes(repoMarker(context.runId))) {
          await github.deleteRepository(repo.name, signal);
          removed = true;
        }
      }
      if (context.siteId !== null) await deleteRepoBySite(db, context.siteId);

      return { removed };
    }),

    markSiteFailed: step(async ({ context }) => {
      // INIT as well: a cancel can land after the site was marked LAUNCH, and it is gone now.
      await setSiteStatus(db, context.siteId ?? missing('siteId'), {
        siteStatus: 'INIT',
        jobStatus: 'FAILURE',
      });
    }),

    sendMail: createMailStep(deps),

    sleep: fromPromise<void, SleepInput>(({ input, signal }) => sleepUntil(input.until, signal)),
  };
}

/** The marker a repository's description carries when this run created it. */
export function repoMarker(runId: string): string {
  return `${RUN_TAG}:${runId}`;
}

export function siteUrls(app: CreatedApp): { staging: string; production: string } {
  return {
    staging: `https://staging.${app.defaultDomain}`,
    production: `https://master.${app.defaultDomain}`,
  };
}

function toCreatedRepo(repo: {
  name: string;
  fullName: string;
  htmlUrl: string;
  defaultBranch: string;
}): CreatedRepo {
  return {
    name: repo.name,
    fullName: repo.fullName,
    url: repo.htmlUrl,
    defaultBranch: repo.defaultBranch,
  };
}

function requestOf(context: SiteCreationContext) {
  return context.request ?? missing('request');
}

function repoOf(context: SiteCreationContext): CreatedRepo {
  return context.repo ?? missing('repo');
}

function appOf(context: SiteCreationContext): CreatedApp {
  return context.app ?? missing('app');
}

function missing(what: string): never {
  throw new PermanentError(`the run has no ${what} at this step`, { service: 'orchestrator' });
}

export type { StepInput };
