/**
 * The errors a robot program sees from this package, apart from the codec's: a refusal or error text
 * from the server, and options that cannot work together. Both are the caller's or the server's doing,
 * not a bug here, so a program may print their message alone.
 */
export class ClientError extends Error {
  override name = 'ClientError';
}

/** The server answered with an error text frame (openpi's error path) or refused the connection. */
export class ServerError extends ClientError {
  override name = 'ServerError';
}
