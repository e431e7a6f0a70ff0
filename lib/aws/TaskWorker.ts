/**
 * The worker's loop, in the manner of bbc/sqs-consumer: receive, run, delete only after the
 * part is written; a heartbeat keeps a long chunk invisible; on stop, receiving ends and
 * in-flight chunks finish or are released within a bounded grace period.
 */
import { EventEmitter } from "node:events";
import os from "node:os";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import { isMapTask, isMergeTask, isReduceTask, Manifest, TaskMessage, taskIndex } from "../core/job/manifest.js";
import { manifestKey, pastEndKey, succeededKey } from "../core/keys.js";
import { markRunning } from "../core/pipeline/backups.js";
import { LEASE_NOTE_EVERY_MS, noteLease } from "../core/pipeline/leases.js";
import { exists, readJsonIfExists } from "../core/pipeline/blobJson.js";
import { showEnd } from "../core/pipeline/status.js";
import type { PartNotifier, TaskQueue, QueueMessage } from "../core/ports.js";
import { noticeOf } from "../core/pipeline/partNotices.js";
import { nowOf, type PipelineDeps } from "../core/pipeline/deps.js";
import { logFieldsOf } from "../core/pipeline/logFields.js";
import { cachedJobEnds, type JobEnds } from "../core/pipeline/jobEnds.js";
import { isDeterministic, isStaleTask, jobEndedMarkers, runTask, taskPartKey, type TaskOutcome } from "../core/pipeline/task.js";
import { mergeIndexOf } from "../core/pipeline/mergeTree.js";
import { afterFailedAttempt } from "../core/pipeline/attempts.js";
import { failJobOfTask, handleDeadLetter } from "../core/pipeline/deadLetter.js";
import { backoffMs, sleep, type Backoff } from "../core/sleep.js";
import type { MemoryUse } from "./containerMemory.js";
import { SharedReceive } from "./sharedReceive.js";
import { noProtection, type TaskProtection } from "./taskProtection.js";

/** This process, as task records name it: in a container, its hostname is the container's id. */
export const WORKER_ID = `${os.hostname()}/${process.pid}`;

export interface TaskWorkerOptions {
  readonly queue: TaskQueue;
  readonly deps: PipelineDeps;
  /** Chunks in progress at once (one per CPU given to the container). */
  readonly concurrency: number;
  readonly visibilitySeconds: number;
  readonly heartbeatSeconds: number;
  /**
   * Receives after which the queue hands a task to its dead-letter queue (the stack's maxAttempts).
   * A job that allows fewer attempts is failed by its worker at its own last; unset: the queue's
   * count is taken to be each job's.
   */
  readonly queueAttempts?: number;
  /** Long-poll wait. Default 20. */
  readonly waitSeconds?: number;
  readonly protection?: TaskProtection;
  /** The container's memory use; past MEMORY_HIGH_WATER of its limit no chunk is taken. Default: not watched. */
  readonly memory?: () => Promise<MemoryUse | undefined>;
  /** Tells the reducer of each finished task's part, before its message is deleted; unset: no one is told. */
  readonly notices?: PartNotifier;
}

/** Share of the container's memory past which the worker takes no new chunk (the OOM killer acts at the limit). */
export const MEMORY_HIGH_WATER = 0.9;
/** How often a worker whose memory is full looks again. */
const MEMORY_RECHECK_MS = 1000;
/**
 * How long one reading of the container's memory serves every slot: reading cgroup files before
 * each tiny chunk cost a worker more CPU than mapping it. A chunk grows its memory over its
 * run, not in the moments between two receives.
 */
const MEMORY_READING_MS = 250;

export interface TaskWorkerEvents {
  message_received: [task: TaskMessage, message: QueueMessage];
  task_done: [task: TaskMessage, outcome: TaskOutcome];
  task_failed: [task: TaskMessage | undefined, error: CloudmillError, willRetry: boolean];
  heartbeat: [task: TaskMessage];
  /** Memory passed the high-water mark: the worker takes no chunk until it falls back. */
  memory_full: [use: MemoryUse];
  stopped: [];
}

/** How long a worker believes a job is still running: an ended job's tasks stop within this of its end. */
export const JOB_END_RECHECK_MS = 5000;

/** A run of a job: a resumed job (retry) is a new run, whose tasks an end of the last does not stop. */
/** Why a long task was stopped: its job ended (else, its other copy wrote the part). */
const JOB_ENDED = "job-ended";

const jobRun = (task: TaskMessage): string => `${task.jobId}#${task.job.generation ?? 0}`;

/**
 * Pause after failed receives in a row: from 1 s, doubling to 20 s, jittered so that a fleet
 * cut off from SQS does not come back in step. One pause for all of a worker's slots, which share
 * their polls (SharedReceive): they wait it out together and poll again as one.
 */
export const RECEIVE_BACKOFF: Backoff = { baseMs: 1000, factor: 2, capMs: 20_000, jitter: "half" };

/** Longest a hand-back waits for a heartbeat's request still in flight (the SDK's own retries included). */
const HEARTBEAT_LAND_MS = 10_000;

/** Seconds before a failed chunk is retried: exponential, capped at a minute. */
export const retryDelaySeconds = (attempt: number): number => backoffMs(RETRY_BACKOFF, attempt - 1) / 1000;
const RETRY_BACKOFF: Backoff = { baseMs: 1000, factor: 2, capMs: 60_000 };

export class TaskWorker extends EventEmitter<TaskWorkerEvents> {
  readonly #options: TaskWorkerOptions;
  readonly #stop = new AbortController();
  /** Aborts tasks still running when the grace period ends. */
  readonly #kill = new AbortController();
  #loops: Promise<void>[] = [];
  #memoryFull = false;
  #memoryReading: { readonly at: number; readonly use: Promise<MemoryUse | undefined> } | undefined;
  /** Which jobs have ended, asked once per job per JOB_END_RECHECK_MS rather than per task. */
  readonly #jobEnds: JobEnds;
  /** The slots' shared long poll. */
  readonly #received: SharedReceive;
  #running = 0;
  #done = 0;
  /** Failed receives in a row, and when the slots may poll again after the last (RECEIVE_BACKOFF). */
  #failedReceives = 0;
  #receiveAgainAt = 0;
  /** Done tasks' deletes on their way (#whenDeleted). */
  readonly #deleting = new Set<Promise<void>>();

  constructor(options: TaskWorkerOptions) {
    super();
    if (options.heartbeatSeconds >= options.visibilitySeconds) {
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `heartbeat (${options.heartbeatSeconds}s) must be shorter than the visibility timeout (${options.visibilitySeconds}s)`,
      );
    }
    this.#options = options;
    // A job that succeeded has ended too: a late copy of one of its tasks (a first delivery,
    // which no longer looks for its part) is dropped rather than mapped again. So has a run a
    // resume superseded: a copy queued before the resume would write its part with the earlier
    // run's limits, over a part the resume removed to map its chunk again.
    this.#jobEnds = cachedJobEnds(
      (run) => this.#runEnded(run),
      JOB_END_RECHECK_MS,
      () => nowOf(options.deps),
    );
    // A stop lets a poll in flight end rather than abort it: SQS would hand a message that arrives
    // meanwhile to the connection that left, hidden for its visibility timeout, its receive counted
    // as an attempt. What the poll brings is handed back; no poll starts once stopping (slots
    // still waiting get nothing). Only the grace's end aborts one.
    this.#received = new SharedReceive((maxMessages) =>
      this.stopping
        ? Promise.resolve([])
        : options.queue.receive({ maxMessages, waitSeconds: options.waitSeconds ?? 20, signal: this.#kill.signal }),
    );
  }

  /** Whether a run of a job (`<jobId>#<generation>`) has ended, asked of the store now. */
  async #runEnded(run: string): Promise<boolean> {
    const at = run.lastIndexOf("#");
    const jobId = run.slice(0, at);
    const { deps } = this.#options;
    const { output } = deps;
    const generation = Number(run.slice(at + 1));
    if (await jobEndedMarkers(output, jobId, generation)) {
      // Its status may still say running (a failure handler's status write was lost after its
      // marker), and no part will wake the reducer to show the end: this worker shows it.
      await readJsonIfExists(output, manifestKey(jobId), Manifest)
        .then((manifest) => manifest && showEnd(deps, manifest))
        .catch((err: unknown) => deps.log.warn("could not show the job's end", { jobId, ...logFieldsOf(toCloudmillError(err)) }));
      return true;
    }
    return (await exists(output, succeededKey(jobId))) || (await exists(output, pastEndKey(jobId, generation + 1)));
  }

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  /** Chunks in progress now, and done since the worker started (for its usage reports). */
  get chunks(): { running: number; done: number } {
    return { running: this.#running, done: this.#done };
  }

  start(): this {
    this.#loops = Array.from({ length: this.#options.concurrency }, () => this.#receiveLoop());
    return this;
  }

  /**
   * Stops receiving: a long poll in flight is let end (up to its wait), and what it brings is
   * handed back. Waits up to graceMs for chunks in progress, then aborts them and hands their
   * messages back at once, so another worker takes them without waiting.
   * Done tasks' deletes still waiting for their batch are sent before it resolves.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stop.abort();
    const grace = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
    if ((await Promise.race([Promise.all(this.#loops).then(() => "done" as const), grace])) === "timeout") {
      this.#kill.abort();
      await Promise.all(this.#loops);
    }
    await Promise.all(this.#deleting);
    this.emit("stopped");
  }

  async #receiveLoop(): Promise<void> {
    const { deps } = this.#options;
    while (!this.stopping) {
      if (await this.#memoryIsFull()) {
        await sleep(MEMORY_RECHECK_MS, this.#stop.signal).catch(() => undefined);
        continue;
      }
      if (this.stopping) break;
      let message: QueueMessage | undefined;
      try {
        message = await this.#received.next();
        this.#failedReceives = 0;
      } catch (err) {
        if (this.stopping) break;
        // The slots a failed poll was for fail together: the first to see it sets their pause.
        const now = Date.now();
        if (now >= this.#receiveAgainAt) {
          const pauseMs = Math.round(backoffMs(RECEIVE_BACKOFF, this.#failedReceives++));
          this.#receiveAgainAt = now + pauseMs;
          deps.log.warn("receive failed; backing off", { ...logFieldsOf(toCloudmillError(err)), pauseMs });
        }
        // A ref'd timer, cut short by stop(): while S3 and SQS are unreachable, this back-off may
        // be all that keeps the process alive (an unref'd one let the worker exit, code 13).
        await sleep(this.#receiveAgainAt - now, this.#stop.signal).catch(() => undefined);
        continue;
      }
      if (this.stopping) {
        if (message !== undefined) await this.#handBack(message);
        break;
      }
      if (message === undefined) continue;
      try {
        await this.#handle(message);
      } catch (err) {
        // #handle settles every path itself; should anything still escape, this loop must
        // keep receiving (a dead loop is a worker that looks alive and does nothing).
        deps.log.error("chunk handling failed; the message returns after its visibility timeout", logFieldsOf(toCloudmillError(err)));
      }
    }
  }

  /**
   * A task (a chunk, a keyed job's reduce task, a merge task) past its first heartbeat is long: at
   * beats 1, 2, 4, 8, … its running marker wakes the reducer to look for stragglers (backups.ts);
   * a merge or reduce task also notes its lease every LEASE_NOTE_EVERY_MS, so that the reducer
   * does not take it for lost (leases.ts). The job's end (a cancel, a failure) stops it; from the
   * second beat on, a part written by its other copy stops it too, freeing the worker.
   */
  async #longTask(
    task: TaskMessage,
    index: () => Promise<number | undefined>,
    beat: number,
    startedAt: string,
    lost: AbortController,
    long: { endSeen: boolean },
  ): Promise<void> {
    const { deps, heartbeatSeconds } = this.#options;
    // Stopped once the end is seen on two beats, the second asked of the store afresh: a failure
    // marker that a judge of an earlier run wrote and took back (failJob, after a resume) must
    // not stop the resumed run's task.
    if (await this.#jobEnds.ended(jobRun(task))) {
      if (long.endSeen && (await this.#runEnded(jobRun(task)))) {
        lost.abort(JOB_ENDED);
        return;
      }
      long.endSeen = true;
    } else long.endSeen = false;
    const noteEvery = Math.max(1, Math.floor(LEASE_NOTE_EVERY_MS / (heartbeatSeconds * 1000)));
    const marks = (beat & (beat - 1)) === 0;
    const notes = !isMapTask(task) && (beat === 1 || beat % noteEvery === 0);
    if (marks || notes) {
      const i = await index();
      // A merge of an earlier run of the job (queued before a resume) is no straggler of this one.
      if (i !== undefined && marks) await markRunning(deps, task.jobId, i, startedAt, WORKER_ID, task.job.generation);
      if (i !== undefined && notes) await noteLease(deps, task.jobId, i, task.job.generation);
    }
    // A redo is there to replace the part it would find.
    const redo = isMapTask(task) && task.redo;
    if (beat >= 2 && !redo && (await exists(deps.output, taskPartKey(task)))) lost.abort();
  }

  /** True while the container is near its memory limit (said once per episode); a failed read never stops work. */
  async #memoryIsFull(): Promise<boolean> {
    const { memory } = this.#options;
    if (memory === undefined) return false;
    const now = performance.now();
    if (this.#memoryReading === undefined || now - this.#memoryReading.at >= MEMORY_READING_MS)
      this.#memoryReading = { at: now, use: memory().catch(() => undefined) };
    const use = await this.#memoryReading.use;
    const full = use !== undefined && use.used >= MEMORY_HIGH_WATER * use.limit;
    if (full && !this.#memoryFull) {
      this.#options.deps.log.warn("memory nearly full: taking no new chunk until it falls", { used: use.used, limit: use.limit });
      this.emit("memory_full", use);
    } else if (!full && this.#memoryFull) this.#options.deps.log.info("memory below the high-water mark again: taking chunks");
    this.#memoryFull = full;
    return full;
  }

  /**
   * Hands a task this worker was stopped under back to the queue as a fresh message, for another
   * worker at once. A stop (ECS's, a spot interruption) is not the task's fault, but SQS counts
   * every receive toward its dead-letter redrive: made visible again, a task stopped under three
   * times would fail its job. Should the send fail, the message is made visible instead; should
   * the delete fail, the old one comes back too, a duplicate its part makes harmless.
   */
  async #handBack(message: QueueMessage): Promise<void> {
    const { queue } = this.#options;
    try {
      await queue.sendBatch([message.body]);
    } catch {
      await queue.changeVisibility(message.receiptHandle, 0).catch(() => undefined);
      return;
    }
    await queue.delete(message.receiptHandle).catch(() => undefined);
  }

  /**
   * The dead-letter role, here: fails the task's job with its recorded error (unless its part
   * exists after all, or it is a backup or a stale copy), then deletes it. False if that failed.
   */
  async #deadLetter(task: TaskMessage, message: QueueMessage): Promise<boolean> {
    const { queue, deps } = this.#options;
    try {
      if ((await handleDeadLetter(deps, message.body)) === "failed") this.#jobEnds.markEnded(jobRun(task));
      await queue.delete(message.receiptHandle);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Names a done task's part to the reducer, then deletes its message, then calls then(); stop()
   * waits for all three. A notice that fails keeps the message: it comes back, and its next run
   * finds the part and sends the notice again.
   */
  #whenDeleted(message: QueueMessage, part: string | undefined, log: PipelineDeps["log"], then: () => void): void {
    const { queue, notices } = this.#options;
    const settled = (part === undefined || notices === undefined ? Promise.resolve() : notices.written([part]))
      .then(
        () =>
          queue
            .delete(message.receiptHandle)
            .catch((err: unknown) =>
              log.warn("task done, but its message was not deleted; it returns once", logFieldsOf(toCloudmillError(err))),
            ),
        (err: unknown) => log.warn("task done, but the reducer was not told; its message returns once", logFieldsOf(toCloudmillError(err))),
      )
      .then(then)
      .catch((err: unknown) => log.error("a task_done listener failed", logFieldsOf(toCloudmillError(err))))
      .finally(() => this.#deleting.delete(settled));
    this.#deleting.add(settled);
  }

  async #handle(message: QueueMessage): Promise<void> {
    const { queue, deps } = this.#options;
    const protection = this.#options.protection ?? noProtection;
    let task: TaskMessage;
    try {
      task = TaskMessage.parse(JSON.parse(message.body));
    } catch {
      // Not ours and never will be: keep it out of the fleet's way.
      deps.log.error("message is not a task; deleted", { messageId: message.id, bytes: message.body.length });
      await queue.delete(message.receiptHandle).catch(() => undefined);
      this.emit("task_failed", undefined, new CloudmillError(ErrorCode.INVALID_SPEC, "message is not a task"), false);
      return;
    }
    const log = deps.log.child(
      isReduceTask(task)
        ? { jobId: task.jobId, partition: task.reduce.partition }
        : isMergeTask(task)
          ? { jobId: task.jobId, merge: `${task.merge.level}-${task.merge.group}` }
          : { jobId: task.jobId, chunk: task.chunk.index },
    );
    this.emit("message_received", task, message);
    if (isMapTask(task))
      log.debug("chunk received", {
        attempt: message.receiveCount,
        input: task.chunk.input.name,
        range: [task.chunk.start, task.chunk.end],
      });
    await protection.acquire();
    this.#running++;
    const startedAt = new Date().toISOString();
    /** Aborted when another copy of this chunk (its backup, or the original) has written the part. */
    const lost = new AbortController();
    // A merge task's index comes from its job's manifest: read once (again after a failed read), and only for a long one.
    let mergeIndex: Promise<number | undefined> | undefined;
    const index = (): Promise<number | undefined> => {
      if (!isMergeTask(task)) return Promise.resolve(taskIndex(task));
      mergeIndex ??= mergeIndexOf(deps, task).catch((err: unknown) => {
        mergeIndex = undefined;
        throw err;
      });
      return mergeIndex;
    };
    let beats = 0;
    const long = { endSeen: false };
    /**
     * Every beat's visibility request still in flight: a message is handed back only after they
     * land (a late one would hide it again), or after HEARTBEAT_LAND_MS, should one hang.
     */
    const inFlight = new Set<Promise<void>>();
    const heartbeat = setInterval(() => {
      beats++;
      const beat = queue.changeVisibility(message.receiptHandle, this.#options.visibilitySeconds).then(
        () => {
          try {
            this.emit("heartbeat", task);
          } catch {
            // A listener's fault is not the task's.
          }
        },
        (err: unknown) => log.warn("heartbeat failed", logFieldsOf(toCloudmillError(err))),
      );
      inFlight.add(beat);
      void beat.finally(() => inFlight.delete(beat));
      void this.#longTask(task, index, beats, startedAt, lost, long).catch(() => undefined);
    }, this.#options.heartbeatSeconds * 1000);
    const stopBeating = async (): Promise<void> => {
      clearInterval(heartbeat);
      if (inFlight.size === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(inFlight), new Promise<void>((r) => (timer = setTimeout(r, HEARTBEAT_LAND_MS).unref()))]);
      clearTimeout(timer);
    };
    try {
      const outcome = await runTask(deps, task, {
        signal: AbortSignal.any([this.#kill.signal, lost.signal]),
        drain: this.#stop.signal,
        ranOn: "fleet",
        worker: WORKER_ID,
        mayHaveBackup: () => beats > 0,
        firstDelivery: message.receiveCount === 1,
        jobEnded: (t) => this.#jobEnds.ended(jobRun(t)),
      }).finally(stopBeating);
      if (outcome.kind === "done") this.#done++;
      // The task's work is durable, so its slot goes on to the next message while its part's
      // notice and its delete wait to share a message and a DeleteMessageBatch with other slots'
      // (stop() waits for them). A delete that fails brings the message back, and its next
      // delivery finds the part (or the job's end) and is dropped; it is no failed attempt.
      this.#whenDeleted(message, noticeOf(task, outcome), log, () => {
        log.info(isMergeTask(task) ? "merge done" : "chunk done", {
          outcome: outcome.kind,
          ...(outcome.kind === "done" ? { bytes: outcome.bytes } : {}),
        });
        this.emit("task_done", task, outcome);
      });
    } catch (e) {
      const err = toCloudmillError(e);
      if (lost.signal.aborted && !this.#kill.signal.aborted) {
        const ended = lost.signal.reason === JOB_ENDED;
        const outcome: TaskOutcome = { kind: ended ? "job-ended" : "duplicate" };
        // The other copy's part is named too: its writer may name none (the splitter, mapping
        // inline past its time, or a worker of an older release).
        this.#whenDeleted(message, noticeOf(task, outcome), log, () => {
          log.info(ended ? "job ended (cancelled, failed or done); its task stopped" : "chunk done by its other copy; this one stopped");
          this.emit("task_done", task, outcome);
        });
        return;
      }
      // An item runner releases its chunk when an item gives up at the stop (CANCELLED): that is no attempt.
      if (this.#kill.signal.aborted || (this.stopping && err.code === ErrorCode.CANCELLED)) {
        // Stopped mid-chunk: hand it back now rather than after the visibility timeout.
        await this.#handBack(message);
        log.info("chunk released on stop");
        this.emit("task_failed", task, err, true);
        return;
      }
      if (task.backup && isDeterministic(err)) {
        // A backup never fails its job, nor records its error where its original's goes: the
        // original still runs, and meets any error of the task's own.
        await queue.delete(message.receiptHandle).catch(() => undefined);
        log.info("backup copy failed; dropped, its original still runs", logFieldsOf(err));
        this.emit("task_done", task, { kind: "duplicate" });
        return;
      }
      const next = await afterFailedAttempt(deps, task, err, message.receiveCount);
      const queueAttempts = this.#options.queueAttempts ?? message.receiveCount;
      if (next.action === "fail-job" && (await isStaleTask(deps, task).catch(() => false))) {
        // Queued before its job was resumed: its limits and deadline are the earlier run's.
        await queue.delete(message.receiptHandle).catch(() => undefined);
        log.info("stale task of a resumed job dropped", logFieldsOf(err));
        this.emit("task_done", task, { kind: "job-ended" });
        return;
      }
      if (next.action === "fail-job") {
        try {
          await failJobOfTask(deps, task.jobId, task.job.generation ?? 0, err);
          this.#jobEnds.markEnded(jobRun(task));
          await queue.delete(message.receiptHandle);
        } catch (e2) {
          // S3 or SQS failed us while failing the job: the message comes back and the next
          // attempt meets the same error and tries again.
          log.warn("chunk failed, but the job could not be marked failed yet; will retry", {
            ...logFieldsOf(err),
            cause: logFieldsOf(toCloudmillError(e2)),
          });
          await queue.changeVisibility(message.receiptHandle, retryDelaySeconds(message.receiveCount)).catch(() => undefined);
          this.emit("task_failed", task, err, true);
          return;
        }
        log.error(err.code === ErrorCode.DEADLINE ? "job past its deadline; job failed" : "chunk failed; job failed", logFieldsOf(err));
        this.emit("task_failed", task, err, false);
      } else if (
        next.last &&
        (next.attempt > message.receiveCount || message.receiveCount < queueAttempts) &&
        (await this.#deadLetter(task, message))
      ) {
        // The job's last attempt, which the queue would deliver again: one of them was the splitter's
        // inline attempt, or the job allows fewer than the queue's own count. (At the queue's count
        // it moves on to the dead-letter queue, whose handler fails the job and whose alarm fires.)
        log.warn("chunk failed its last attempt", { attempt: next.attempt, of: task.job.maxAttempts, ...logFieldsOf(err) });
        this.emit("task_failed", task, err, false);
      } else {
        // After the last attempt (when failing the job here failed), make it visible now so the queue moves it on.
        await queue.changeVisibility(message.receiptHandle, next.last ? 0 : retryDelaySeconds(message.receiveCount)).catch(() => undefined);
        log.warn("chunk failed", { attempt: next.attempt, of: task.job.maxAttempts, ...logFieldsOf(err) });
        this.emit("task_failed", task, err, !next.last);
      }
    } finally {
      clearInterval(heartbeat);
      this.#running--;
      await protection.release();
    }
  }
}
