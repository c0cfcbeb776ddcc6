// How a message handler says no without ending the connection (vhost-user.rst, REPLY_ACK).

/** A well-formed request that cannot be honoured: refused (REPLY_ACK failure), the connection goes on. */
export class RequestRefused extends Error {}

/** As RequestRefused, and the ring it concerns stops until the frontend sets it up again. */
export class RingRefused extends RequestRefused {
  constructor(
    readonly ring: number,
    message: string,
  ) {
    super(message);
  }
}
