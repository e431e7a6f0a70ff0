/** Sending task messages: a job may have a million, so they are built and sent a slice at a time. */
import type { TaskMessage } from "../job/manifest.js";
import type { TaskQueue } from "../ports.js";

/** How many task messages to build at once (bounds memory for million-chunk jobs). */
const ENQUEUE_SLICE = 1000;

/** Sends task messages, a slice at a time (a job may have a million). */
export const enqueueTasks = async (queue: TaskQueue, tasks: Iterable<TaskMessage>): Promise<void> => {
  let batch: string[] = [];
  for (const task of tasks) {
    batch.push(JSON.stringify(task));
    if (batch.length === ENQUEUE_SLICE) {
      await queue.sendBatch(batch);
      batch = [];
    }
  }
  if (batch.length) await queue.sendBatch(batch);
};
