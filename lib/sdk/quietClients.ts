/**
 * The AWS SDK warns every Node 20 process, in nine lines on stderr, that its releases from 2027
 * need Node 22. cloudmill supports Node ≥ 20.19 with the release it pins, so to a script using
 * the SDK the warning says nothing it can act on. The AWS SDK's documented switch
 * (aws/aws-sdk-js-v3#7983) is `AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true`, read when
 * a client is made; the CLI sets it for its whole process (bin/cloudmill.js).
 */

/** The AWS SDK's switch for its Node version notice. */
export const NODE_VERSION_NOTICE_SWITCH = "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED";

/**
 * Makes AWS clients with the switch on for that moment only: the caller's environment is left
 * as it was (its child processes do not inherit the switch), and a switch the caller set, either
 * way, is theirs. No other warning is touched. The AWS SDK gives its notice once per process, so
 * once cloudmill's clients are made the caller's own clients of that SDK copy give none either.
 */
export const quietly = <T>(make: () => T): T => {
  if (process.env[NODE_VERSION_NOTICE_SWITCH] !== undefined) return make();
  process.env[NODE_VERSION_NOTICE_SWITCH] = "true";
  try {
    return make();
  } finally {
    delete process.env[NODE_VERSION_NOTICE_SWITCH];
  }
};
