/**
 * Opens a page in headless Chromium (Debian's /usr/bin/chromium) over the DevTools protocol on
 * a pipe (`--remote-debugging-pipe`: NUL-separated JSON on fds 3 and 4, no port, no extra
 * package) and reports what a person's browser would show: console errors, uncaught
 * exceptions, every network request, values evaluated in the page, and a screenshot.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";

export const CHROMIUM = "/usr/bin/chromium";
/** Longest one protocol call or the page's load may take. */
const STEP_MS = 20_000;

export interface OpenedPage {
  /** Console errors, uncaught exceptions and error log entries, as text. */
  readonly errors: string[];
  /** URLs of every request the page made (its own file URL included). */
  readonly requests: string[];
  evaluate<T>(expression: string): Promise<T>;
  screenshot(): Promise<Buffer>;
  close(): Promise<void>;
}

export const openPage = async (url: string, viewport = { width: 1000, height: 900 }): Promise<OpenedPage> => {
  const profile = await mkdtemp(path.join(os.tmpdir(), "cloudmill-chromium-"));
  const child: ChildProcess = spawn(
    CHROMIUM,
    [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--hide-scrollbars",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--disable-component-update",
      "--remote-debugging-pipe",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] },
  );
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners: ((method: string, params: Record<string, unknown>, sessionId?: string) => void)[] = [];
  let buffered = Buffer.alloc(0);
  fromBrowser.on("data", (data: Buffer) => {
    buffered = Buffer.concat([buffered, data]);
    let nul: number;
    while ((nul = buffered.indexOf(0)) >= 0) {
      const text = buffered.subarray(0, nul).toString("utf8");
      buffered = buffered.subarray(nul + 1);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        failAll(`chromium sent what is not JSON: ${text.slice(0, 80)}`);
        continue;
      }
      const message = parsed as {
        id?: number;
        result?: unknown;
        error?: { message: string };
        method?: string;
        params?: Record<string, unknown>;
        sessionId?: string;
      };
      if (message.id !== undefined) {
        const p = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) p?.reject(new Error(message.error.message));
        else p?.resolve(message.result);
      } else if (message.method) for (const l of listeners) l(message.method, message.params ?? {}, message.sessionId);
    }
  });
  // Nothing waits forever: a browser that dies or stalls fails every call in flight.
  const failAll = (why: string): void => {
    for (const p of pending.values()) p.reject(new Error(why));
    pending.clear();
  };
  child.once("error", (err) => failAll(`chromium did not start: ${err.message}`));
  child.once("exit", (code, signal) => failAll(`chromium exited (${code ?? signal})`));
  const send = <T>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`chromium: no answer to ${method} in ${STEP_MS} ms`));
      }, STEP_MS);
      const settle =
        <V>(f: (v: V) => void) =>
        (v: V) => {
          clearTimeout(timer);
          f(v);
        };
      pending.set(id, { resolve: settle(resolve as (v: unknown) => void), reject: settle(reject) });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGKILL");
      await exited;
    }
    // Chromium's helper processes outlive the browser by a moment, still writing to the profile.
    await rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  };

  const errors: string[] = [];
  const requests: string[] = [];
  try {
    return await attach();
  } catch (err) {
    await kill();
    throw err;
  }

  async function attach(): Promise<OpenedPage> {
    const { targetId } = await send<{ targetId: string }>("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await send<{ sessionId: string }>("Target.attachToTarget", { targetId, flatten: true });
    let loaded: () => void = () => {};
    const load = new Promise<void>((r) => (loaded = r));
    listeners.push((method, params, from) => {
      if (from !== sessionId) return;
      if (method === "Runtime.consoleAPICalled" && params["type"] === "error")
        errors.push(`console.error: ${JSON.stringify(params["args"])}`);
      if (method === "Runtime.exceptionThrown") errors.push(`exception: ${JSON.stringify(params["exceptionDetails"])}`);
      if (method === "Log.entryAdded" && (params["entry"] as { level?: string }).level === "error")
        errors.push(`log: ${(params["entry"] as { text?: string }).text}`);
      if (method === "Network.requestWillBeSent") requests.push((params["request"] as { url: string }).url);
      if (method === "Page.loadEventFired") loaded();
    });
    for (const domain of ["Runtime", "Log", "Network", "Page"]) await send(`${domain}.enable`, {}, sessionId);
    await send("Emulation.setDeviceMetricsOverride", { ...viewport, deviceScaleFactor: 1, mobile: false }, sessionId);
    await send("Page.navigate", { url }, sessionId);
    await Promise.race([
      load,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`chromium: ${url} did not load in ${STEP_MS} ms`)), STEP_MS).unref()),
    ]);

    return {
      errors,
      requests,
      evaluate: async <T>(expression: string): Promise<T> => {
        const r = await send<{ result: { value: T }; exceptionDetails?: unknown }>(
          "Runtime.evaluate",
          { expression, returnByValue: true },
          sessionId,
        );
        if (r.exceptionDetails) throw new Error(`evaluate ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
        return r.result.value;
      },
      screenshot: async () =>
        Buffer.from(
          (await send<{ data: string }>("Page.captureScreenshot", { format: "png", captureBeyondViewport: true }, sessionId)).data,
          "base64",
        ),
      close: async () => {
        await send("Browser.close").catch(() => undefined);
        await kill();
      },
    };
  }
};
