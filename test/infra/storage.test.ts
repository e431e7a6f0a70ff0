import { beforeAll, describe, expect, it } from "vitest";
import { Match, type Template } from "aws-cdk-lib/assertions";
import { WORK_PREFIX } from "../../lib/core/keys.js";
import { LAB_CONTEXT, SPOT_CONTEXT, resource, synth } from "./synth.js";

const BUCKETS = ["PipelineInputBucket", "PipelineOutputBucket", "PipelineLogBucket"] as const;

describe("storage", () => {
  let template: Template;
  let spot: Template;
  beforeAll(() => {
    template = synth(LAB_CONTEXT).template;
    spot = synth(SPOT_CONTEXT).template;
  });

  it("creates an input, an output and an access-log bucket", () => {
    template.resourceCountIs("AWS::S3::Bucket", 3);
  });

  it.each(BUCKETS)("%s blocks public access, enforces ownership and encrypts at rest", (prefix) => {
    const { resource: bucket } = resource(template, "AWS::S3::Bucket", prefix);
    expect(bucket.Properties).toMatchObject({
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }] },
    });
  });

  it.each(BUCKETS)("%s has a bucket policy that denies every request without TLS 1.2", (prefix) => {
    const { id } = resource(template, "AWS::S3::Bucket", prefix);
    template.hasResourceProperties("AWS::S3::BucketPolicy", {
      Bucket: { Ref: id },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: "Deny",
            Principal: { AWS: "*" },
            Action: "s3:*",
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          }),
          Match.objectLike({
            Effect: "Deny",
            Principal: { AWS: "*" },
            Action: "s3:*",
            Condition: { NumericLessThan: { "s3:TlsVersion": 1.2 } },
          }),
        ]),
      },
    });
  });

  it("expires intermediate state under _work/ after workRetentionDays", () => {
    const rules = (t: Template) => resource(t, "AWS::S3::Bucket", "PipelineOutputBucket").resource.Properties!["LifecycleConfiguration"];
    expect(rules(template)).toEqual({
      Rules: expect.arrayContaining([{ Id: "expire-work", Prefix: WORK_PREFIX, ExpirationInDays: 7, Status: "Enabled" }]),
    });
    expect(rules(spot)).toEqual({
      Rules: expect.arrayContaining([{ Id: "expire-work", Prefix: WORK_PREFIX, ExpirationInDays: 3, Status: "Enabled" }]),
    });
  });

  it("expires files staged under the input bucket's _uploads/ with the job's state (a submit stopped mid-way leaves them)", () => {
    const rules = (t: Template) => resource(t, "AWS::S3::Bucket", "PipelineInputBucket").resource.Properties!["LifecycleConfiguration"];
    expect(rules(template)).toEqual({
      Rules: expect.arrayContaining([{ Id: "expire-uploads", Prefix: "_uploads/", ExpirationInDays: 7, Status: "Enabled" }]),
    });
    expect(rules(spot)).toEqual({
      Rules: expect.arrayContaining([{ Id: "expire-uploads", Prefix: "_uploads/", ExpirationInDays: 3, Status: "Enabled" }]),
    });
  });

  it("aborts incomplete multipart uploads in both data buckets", () => {
    for (const prefix of ["PipelineInputBucket", "PipelineOutputBucket"]) {
      expect(resource(template, "AWS::S3::Bucket", prefix).resource.Properties!["LifecycleConfiguration"]).toEqual({
        Rules: expect.arrayContaining([
          { Id: "abort-incomplete-uploads", AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: "Enabled" },
        ]),
      });
    }
  });

  it("logs requests to both data buckets into the log bucket, which expires logs after logRetentionDays", () => {
    const logs = resource(template, "AWS::S3::Bucket", "PipelineLogBucket");
    for (const [prefix, logPrefix] of [
      ["PipelineInputBucket", "s3/input/"],
      ["PipelineOutputBucket", "s3/output/"],
    ] as const) {
      expect(resource(template, "AWS::S3::Bucket", prefix).resource.Properties!["LoggingConfiguration"]).toEqual({
        DestinationBucketName: { Ref: logs.id },
        LogFilePrefix: logPrefix,
      });
    }
    expect(logs.resource.Properties!["LifecycleConfiguration"]).toEqual({
      Rules: [{ Id: "expire-logs", ExpirationInDays: 30, Status: "Enabled" }],
    });
  });

  it("retains the output and log buckets by default and empties and deletes the input bucket", () => {
    expect(resource(template, "AWS::S3::Bucket", "PipelineOutputBucket").resource).toMatchObject({
      DeletionPolicy: "Retain",
      UpdateReplacePolicy: "Retain",
    });
    expect(resource(template, "AWS::S3::Bucket", "PipelineLogBucket").resource).toMatchObject({ DeletionPolicy: "Retain" });
    const input = resource(template, "AWS::S3::Bucket", "PipelineInputBucket");
    expect(input.resource).toMatchObject({ DeletionPolicy: "Delete" });
    template.resourceCountIs("Custom::S3AutoDeleteObjects", 1);
    template.hasResourceProperties("Custom::S3AutoDeleteObjects", { BucketName: { Ref: input.id } });
    // A kept bucket keeps its policy: TLS only, and the grant that delivers the access logs.
    for (const bucket of ["PipelineOutputBucket", "PipelineLogBucket"])
      expect(resource(template, "AWS::S3::BucketPolicy", `${bucket}Policy`).resource, bucket).toMatchObject({
        DeletionPolicy: "Retain",
        UpdateReplacePolicy: "Retain",
      });
  });

  it("destroys the output bucket too when outputRemoval=destroy", () => {
    expect(resource(spot, "AWS::S3::Bucket", "PipelineOutputBucket").resource).toMatchObject({ DeletionPolicy: "Delete" });
    expect(resource(spot, "AWS::S3::BucketPolicy", "PipelineOutputBucketPolicy").resource).toMatchObject({ DeletionPolicy: "Delete" });
    spot.resourceCountIs("Custom::S3AutoDeleteObjects", 3);
  });

  it("leaves no log group behind on destroy: every function, CDK's handlers too, logs to a group of the stack's", () => {
    for (const [t, retention] of [
      [template, 30],
      [spot, 14],
    ] as const) {
      const groups = t.findResources("AWS::Logs::LogGroup") as Record<
        string,
        { DeletionPolicy?: string; Properties: { RetentionInDays?: number } }
      >;
      const functions = Object.entries(t.findResources("AWS::Lambda::Function") as Record<string, { Properties: Record<string, unknown> }>);
      // The three roles, the listing publisher, and CDK's: emptying buckets, the default security group, bucket notifications.
      expect(functions.map(([id]) => id)).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^CustomS3AutoDeleteObjectsCustomResourceProviderHandler/),
          expect.stringMatching(/^CustomVpcRestrictDefaultSGCustomResourceProviderHandler/),
          expect.stringMatching(/^BucketNotificationsHandler/),
        ]),
      );
      for (const [id, fn] of functions) {
        const group = (fn.Properties["LoggingConfig"] as { LogGroup?: { Ref?: string } } | undefined)?.LogGroup?.Ref;
        expect(group, `${id} logs to an implicit /aws/lambda group`).toBeDefined();
        expect(groups[group!], `${id}'s log group`).toMatchObject({ DeletionPolicy: "Delete", Properties: { RetentionInDays: retention } });
      }
    }
  });
});
