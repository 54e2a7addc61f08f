/** Brings dist/ and packages/client/dist/ up to date with their sources; returns how many files changed. */
export function ensureBuilt(): Promise<number>;
