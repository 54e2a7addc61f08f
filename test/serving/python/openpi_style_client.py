"""A robot client written as openpi's Python client (openpi-client) talks: msgpack frames whose numpy
arrays are maps with bytes keys (__ndarray__, data, dtype, shape), numpy scalars as __npgeneric__, the
server's metadata as the first frame, then one observation and one reply at a time; a text frame is the
server's error. Written for this test from the wire protocol (../shared/DESIGN.md), with Debian's numpy,
msgpack and websockets.

Usage: openpi_style_client.py URL ROBOT  (ROBOT: aloha or droid). Prints one JSON line of what it saw.
"""
import asyncio
import json
import sys

import msgpack
import numpy as np
import websockets


def pack_default(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"unsupported dtype {obj.dtype}")
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def unpack_hook(obj):
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj):
    return msgpack.packb(obj, default=pack_default, use_bin_type=True)


def unpackb(data):
    return msgpack.unpackb(data, object_hook=unpack_hook, raw=False)


def observation(robot, rng):
    if robot == "aloha":
        return {
            "state": rng.uniform(-1, 1, 14).astype(np.float64),
            "images": {
                cam: rng.integers(0, 256, (3, 224, 224), dtype=np.uint8)
                for cam in ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")
            },
            "prompt": "transfer the cube",
        }
    return {
        "observation/exterior_image_1_left": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image_left": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/joint_position": rng.uniform(-1, 1, 7),
        "observation/gripper_position": np.float64(0.5),
        "prompt": "pick up the cube",
    }


async def main(url, robot):
    rng = np.random.default_rng(0)
    seen = {}
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        metadata = unpackb(await ws.recv())
        seen["metadata_keys"] = sorted(metadata.keys())
        for _ in range(3):
            await ws.send(packb(observation(robot, rng)))
            reply = await ws.recv()
            if isinstance(reply, str):
                raise RuntimeError(f"Error in inference server:\n{reply}")
            reply = unpackb(reply)
        actions = reply["actions"]
        seen.update(
            actions_shape=list(actions.shape),
            actions_dtype=actions.dtype.str,
            finite=bool(np.isfinite(actions).all()),
            reply_keys=sorted(reply.keys()),
        )
        # A malformed observation: the server answers with a text frame naming the field.
        bad = observation(robot, rng)
        bad.pop("prompt")
        bad["state" if robot == "aloha" else "observation/joint_position"] = np.zeros(3)
        await ws.send(packb(bad))
        error = await ws.recv()
        seen["error_is_text"] = isinstance(error, str)
        seen["error"] = error if isinstance(error, str) else None
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
