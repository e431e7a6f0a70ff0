// Placeholder until the failures role is wired (issue 3); exists so the CDK app can bundle it.
export const handler = async (): Promise<void> => {
  throw new Error("failures: not wired yet");
};
