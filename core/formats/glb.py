"""Reading glTF 2.0 binary (.glb) files: the container and float VEC3 accessors (numpy only).

The writer is :func:`pnrelight.avatar.export.write_glb`. Layout (spec: registry.khronos.org/glTF):
a 12-byte header (magic ``glTF``, version 2, total length), then chunks of (length, type, data):
the first is ``JSON`` (the scene description), an optional second ``BIN\\0`` holds the buffer 0
that buffer views index by byte offset. Every reader in the project (the avatar folder's UV check,
the light stage's subject loader and its morph-target offsets) goes through :func:`read_glb`.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

__all__ = ["read_glb", "read_glb_json", "read_vec3_accessor"]


def _json_chunk(head: bytes) -> int:
    """Length of the JSON chunk from the first 20 bytes; ValueError unless a glTF 2 binary with JSON first."""
    if len(head) < 20:
        raise ValueError("shorter than a glTF binary header")
    magic, version, _total = struct.unpack_from("<4sII", head, 0)
    if magic != b"glTF":
        raise ValueError("not a glTF binary (no glTF magic)")
    if version != 2:
        raise ValueError(f"glTF binary version {version}, not 2")
    jlen, jtype = struct.unpack_from("<I4s", head, 12)
    if jtype != b"JSON":
        raise ValueError("the first chunk is not JSON")
    return int(jlen)


def read_glb_json(path: str | os.PathLike) -> dict:
    """The JSON chunk of a .glb, without reading its binary chunk. Raises OSError or ValueError."""
    with open(path, "rb") as fh:
        jlen = _json_chunk(fh.read(20))
        text = fh.read(jlen)
    if len(text) != jlen:
        raise ValueError("the JSON chunk is truncated")
    return json.loads(text)


def read_glb(path: str | os.PathLike) -> tuple[dict, bytes]:
    """(JSON dict, BIN chunk bytes; b"" when there is none) of a .glb. Raises OSError or ValueError."""
    with open(path, "rb") as fh:
        data = fh.read()
    jlen = _json_chunk(data[:20])
    if 20 + jlen > len(data):
        raise ValueError("the JSON chunk is truncated")
    gltf = json.loads(data[20:20 + jlen])
    off = 20 + jlen
    binary = b""
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<I4s", data, off)
        if btype == b"BIN\x00":
            binary = data[off + 8:off + 8 + blen]
            if len(binary) != blen:
                raise ValueError("the BIN chunk is truncated")
    return gltf, binary


def read_vec3_accessor(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    """(count, 3) float64 of a float VEC3 accessor (dense, any byteStride, and/or sparse) in buffer 0.

    Raises ValueError (or KeyError/IndexError on a malformed description) when it is not one."""
    acc = gltf["accessors"][index]
    if acc.get("componentType") != 5126 or acc.get("type") != "VEC3":
        raise ValueError(f"accessor {index} is not a float VEC3")
    count = int(acc["count"])
    out = np.zeros((count, 3), dtype=np.float64)
    byte = np.frombuffer(binary, dtype=np.uint8)
    if "bufferView" in acc:
        view = gltf["bufferViews"][acc["bufferView"]]
        if view.get("buffer", 0) != 0:
            raise ValueError("external buffers are not supported")
        stride = int(view.get("byteStride", 12))
        start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
        idx = start + np.arange(count)[:, None] * stride + np.arange(12)
        if count and idx[-1, -1] >= len(byte):
            raise ValueError(f"accessor {index} runs past the binary chunk")
        out = byte[idx].copy().view("<f4").reshape(count, 3).astype(np.float64)
    sparse = acc.get("sparse")
    if sparse:
        n = int(sparse["count"])
        iv = gltf["bufferViews"][sparse["indices"]["bufferView"]]
        itype = {5121: "<u1", 5123: "<u2", 5125: "<u4"}[sparse["indices"]["componentType"]]
        ind = np.frombuffer(binary, dtype=itype, count=n, offset=int(iv.get("byteOffset", 0)) + int(sparse["indices"].get("byteOffset", 0)))
        vv = gltf["bufferViews"][sparse["values"]["bufferView"]]
        vals = np.frombuffer(binary, dtype="<f4", count=n * 3, offset=int(vv.get("byteOffset", 0)) + int(sparse["values"].get("byteOffset", 0)))
        out[ind.astype(np.int64)] = vals.reshape(n, 3)
    return out
