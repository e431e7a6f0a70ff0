/** `chunkSize` → `chunk-size`, `deadLetters` → `dead-letters`: how flags and service names spell fields. */
export const kebabCase = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
