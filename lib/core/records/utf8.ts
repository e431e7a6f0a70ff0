/** Whether bytes are UTF-8: where text decoded from them holds U+FFFD, it may stand for bytes that are not. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export const isUtf8 = (bytes: Uint8Array): boolean => {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
};
