// Placeholder until the splitter role is wired (issue 3); exists so the CDK app can bundle it.
export const handler = async (): Promise<void> => {
  throw new Error("splitter: not wired yet");
};
