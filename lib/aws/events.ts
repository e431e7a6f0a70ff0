/** The shapes AWS delivers to the handlers (S3 notifications, SQS batches), parsed with zod at the edge. */
import * as z from "zod";
import type { CreatedObject } from "../core/pipeline/trigger.js";
import type { ListingContinuation } from "../core/ports.js";

const S3Record = z.object({
  eventName: z.string(),
  eventTime: z.string().optional(),
  s3: z.object({
    bucket: z.object({ name: z.string() }),
    object: z.object({
      key: z.string(),
      eTag: z.string().optional(),
      versionId: z.string().optional(),
      sequencer: z.string().optional(),
      size: z.number().optional(),
    }),
  }),
});

/** An S3 notification with records. */
export const S3Notification = z.object({ Records: z.array(S3Record) });
/** What S3 sends once when notifications are configured. */
const S3TestEvent = z.object({ Event: z.literal("s3:TestEvent") }).loose();

/** Keys in S3 events, and in listings asked for with `EncodingType: "url"`, are URL-encoded, with `+` for spaces. */
export const decodeUrlEncodedKey = (key: string): string => decodeURIComponent(key.replace(/\+/g, " "));

/** Created objects named by a notification (test events and other event types name none). */
export const createdObjects = (event: unknown): CreatedObject[] => {
  if (S3TestEvent.safeParse(event).success) return [];
  return S3Notification.parse(event)
    .Records.filter((r) => r.eventName.startsWith("ObjectCreated"))
    .map((r) => ({
      bucket: r.s3.bucket.name,
      key: decodeUrlEncodedKey(r.s3.object.key),
      ...(r.s3.object.eTag ? { etag: r.s3.object.eTag } : {}),
      ...(r.s3.object.versionId ? { versionId: r.s3.object.versionId } : {}),
      ...(r.s3.object.sequencer ? { sequencer: r.s3.object.sequencer } : {}),
      ...(r.eventTime ? { eventTime: r.eventTime } : {}),
    }));
};

/** A key as S3 events carry it: URL-encoded, with `+` for spaces. */
const urlEncodedKey = (key: string): string => encodeURIComponent(key).replace(/%20/g, "+");

/** A continuation's message body: the job spec's notification, as S3 sent it, and the continuation. */
export const continuationBody = ({ jobId, seq, object }: ListingContinuation): unknown => ({
  Records: [
    {
      eventName: "ObjectCreated:Put",
      ...(object.eventTime !== undefined ? { eventTime: object.eventTime } : {}),
      s3: {
        bucket: { name: object.bucket },
        object: {
          key: urlEncodedKey(object.key),
          ...(object.etag !== undefined ? { eTag: object.etag } : {}),
          ...(object.versionId !== undefined ? { versionId: object.versionId } : {}),
          ...(object.sequencer !== undefined ? { sequencer: object.sequencer } : {}),
        },
      },
    },
  ],
  cloudmillListing: { jobId, seq },
});

const ContinuationMark = z.object({ cloudmillListing: z.object({ jobId: z.string(), seq: z.number().int().nonnegative() }) });

/** The continuation a message body carries, with the object that started its job; undefined for any other body. */
export const continuationOf = (body: unknown): { object: CreatedObject; seq: number } | undefined => {
  const mark = ContinuationMark.safeParse(body);
  if (!mark.success) return undefined;
  const [object] = createdObjects(body);
  return object ? { object, seq: mark.data.cloudmillListing.seq } : undefined;
};

const SqsRecord = z.object({
  messageId: z.string(),
  body: z.string(),
  attributes: z.object({ ApproximateReceiveCount: z.string().optional() }).loose().optional(),
  /** A Lambda dead letter's: the last invocation's `ErrorMessage`, among others. */
  messageAttributes: z.record(z.string(), z.object({ stringValue: z.string().optional() }).loose()).optional(),
});
export const SqsEvent = z.object({ Records: z.array(SqsRecord) });
export type SqsBatchResponse = { batchItemFailures: { itemIdentifier: string }[] };
