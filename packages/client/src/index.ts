/**
 * The robot side of openpi's policy protocol: the msgpack-numpy codec (the one the server uses too),
 * a WebSocket client, openpi's action chunk broker and runtime loop.
 */
export {
  ActionChunkBroker,
  type BrokerOptions,
  type Chunk,
  EXECUTION_MODES,
  type ExecutionMode,
  executionOptions,
  type MergeRule,
} from './broker.js';
export { CodecError, DEFAULT_LIMITS, type DecodeLimits, pack, unpack } from './codec.js';
export { ClientError, ServerError } from './errors.js';
export { DTYPE_BYTES, type DType, NdArray, type TypedArray } from './ndarray.js';
export {
  ACTION_PREFIX_KEY,
  getObsValue,
  INFERENCE_DELAY_KEY,
  keyName,
  type ObservationKey,
  type ObservationMap,
  setObsValue,
} from './observation.js';
export { type ConnectOptions, type InferResult, PolicyClient } from './policy-client.js';
export {
  type Agent,
  type Environment,
  PolicyAgent,
  Runtime,
  type RuntimeOptions,
  type Subscriber,
} from './runtime.js';
