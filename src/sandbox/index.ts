/**
 * The sandbox: local emulators of the GitHub and Amplify endpoints the service calls, started
 * together with fresh credentials. The service starts it in-process when no GitHub token is
 * configured; tests start it to watch and break what the real clients see.
 */
import { randomBytes } from 'node:crypto';
import { startAmplifyEmulator, type AmplifyEmulator } from './amplify-emulator.js';
import { startGithubEmulator, type GithubEmulator } from './github-emulator.js';

export interface SandboxOptions {
  org: string;
  /** A team to create in the organisation. */
  team?: string;
  /** `owner/name` of a template repository to create, with one commit. */
  template?: string;
  /** How long a repository made from the template stays empty. */
  templateReadyDelayMs?: number;
  /** The AWS region clients sign for. */
  region: string;
  /** Fixed ports, for a sandbox another process must find again; any free port when absent. */
  githubPort?: number;
  amplifyPort?: number;
}

export interface Sandbox {
  github: GithubEmulator;
  amplify: AmplifyEmulator;
  githubToken: string;
  awsCredentials: { accessKeyId: string; secretAccessKey: string };
  close(): Promise<void>;
}

export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const githubToken = `ghs_sandbox${randomBytes(16).toString('hex')}`;
  const awsCredentials = {
    accessKeyId: `AKIASANDBOX${randomBytes(5).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
  };

  const github = await startGithubEmulator({
    tokens: [githubToken],
    orgs: [options.org],
    ...(options.templateReadyDelayMs !== undefined
      ? { templateReadyDelayMs: options.templateReadyDelayMs }
      : {}),
    ...(options.githubPort !== undefined ? { port: options.githubPort } : {}),
  });
  const amplify = await startAmplifyEmulator({
    credentials: [awsCredentials],
    region: options.region,
    ...(options.amplifyPort !== undefined ? { port: options.amplifyPort } : {}),
  });

  if (options.team) github.state.addTeam(options.org, options.team);
  if (options.template) {
    const [owner, name] = options.template.split('/') as [string, string];
    if (owner !== options.org) github.state.addOrg(owner);
    github.state.addRepo(owner, name, { description: 'site template', withCommit: true });
  }

  return {
    github,
    amplify,
    githubToken,
    awsCredentials,
    async close() {
      await Promise.allSettled([github.close(), amplify.close()]);
    },
  };
}
