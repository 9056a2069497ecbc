#!/usr/bin/env python3
"""Convert a legacy (pre-1.6, non-zip) `torch.save` checkpoint of float32
tensors to safetensors, with the standard library only (no torch, no numpy).

Used by scripts/setup.sh for the speaker encoder that PyPI's Apache-licensed
Resemblyzer 0.1.4 ships as `resemblyzer/pretrained.pt`: libtorch reads
safetensors, not Python pickles.

    torch_legacy_to_safetensors.py IN.pt OUT.safetensors [KEY]

KEY picks a dict inside the checkpoint (Resemblyzer: `model_state`).

The legacy format is: magic number, protocol version and system info (three
pickles), the object pickle whose storages are persistent ids, a pickle of the
storage keys in file order, then per storage its element count (int64) and
raw little-endian data.
"""

import json
import pickle
import struct
import sys

MAGIC = 0x1950A86A20F9469CFC6C
ELEMENT = {"FloatStorage": ("F32", 4)}  # storage type: safetensors dtype, bytes


class Storage:
    def __init__(self, kind, key, size):
        self.kind, self.key, self.size, self.data = kind, key, size, None


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def rebuild_tensor_v2(storage, offset, size, stride, *_):
    return TensorRef(storage, offset, size, stride)


class StorageType:
    def __init__(self, name):
        self.name = name


class Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in checkpoint")

    def persistent_load(self, pid):
        typename, kind, key, _location, size, _view = pid
        if typename != "storage" or kind.name not in ELEMENT:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        return self.storages.setdefault(key, Storage(kind.name, key, size))


def contiguous(t):
    """The tensor's elements in row-major order, as bytes."""
    width = ELEMENT[t.storage.kind][1]
    expected, acc = [], 1
    for dim in reversed(t.size):
        expected.insert(0, acc)
        acc *= dim
    numel = acc
    if tuple(expected) == t.stride or numel <= 1:
        start = t.offset * width
        return t.storage.data[start : start + numel * width]
    out = bytearray()
    index = [0] * len(t.size)
    for _ in range(numel):
        at = t.offset + sum(i * s for i, s in zip(index, t.stride))
        out += t.storage.data[at * width : (at + 1) * width]
        for d in reversed(range(len(index))):
            index[d] += 1
            if index[d] < t.size[d]:
                break
            index[d] = 0
    return bytes(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    key = sys.argv[3] if len(sys.argv) > 3 else None
    storages = {}
    with open(src, "rb") as f:
        if pickle.load(f) != MAGIC:
            raise SystemExit(f"{src}: not a legacy torch checkpoint")
        pickle.load(f)  # protocol version
        pickle.load(f)  # system info
        obj = Unpickler(f, storages).load()
        for k in pickle.load(f):
            st = storages[k]
            (count,) = struct.unpack("<q", f.read(8))
            width = ELEMENT[st.kind][1]
            st.data = f.read(count * width)
            if len(st.data) != count * width:
                raise SystemExit(f"{src}: truncated storage {k}")
    tensors = obj[key] if key else obj
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        if not isinstance(t, TensorRef):
            continue
        blob = contiguous(t)
        header[name] = {"dtype": ELEMENT[t.storage.kind][0], "shape": list(t.size), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(head)))
        out.write(head)
        for blob in blobs:
            out.write(blob)
    print(f"{dst}: {len(header)} tensors, {offset} bytes")


if __name__ == "__main__":
    main()
