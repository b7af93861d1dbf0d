"""Plain data between the grader and a learner's sandboxed process: JSON and safetensors.

A message is an 8-byte length, a JSON header, and the safetensors bytes of every tensor
the header refers to. Nothing is ever pickled: decoding a message can build tensors,
numbers, strings, containers, and a short list of known, inert types (the dataclasses
and models of `toy_models`, TransformerLens's `FactoredMatrix` and `ActivationCache`),
never run code or import a module the grader did not already trust.

Objects that cannot travel as data stay where they are and travel as references:

* in the sandbox, a learner's class, function or module instance becomes a *remote*
  reference (`{"__remote__": id}`), which the grader calls through `mi_course.runtime.remote`;
* in the grader, a callable passed to learner code (a metric, say) becomes a *callback*
  (`{"__callback__": id}`), which the sandbox calls back, so that it runs in the grader.

Which side turns what into a reference is up to the `on_object` function each side
passes to `encode`, and `on_reference` to `decode`.

Reading is bounded, since one side is a learner's code: a message's size, its JSON
header's size, how deep its values nest and how many there are. Anything malformed is a
`WireError`, which costs the learner that answer and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import socket
import struct
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor, nn

__all__ = ["MAX_MESSAGE_BYTES", "WireError", "encode", "decode", "pack", "unpack", "send", "receive"]

#: The largest message either side accepts: learner output beyond this is an error, not a
#: reason for the grader to run out of memory.
MAX_MESSAGE_BYTES = 512 * 2**20

#: A header's JSON (everything but the tensors), how deep its values nest, how many there are.
MAX_HEADER_BYTES = 16 * 2**20
MAX_DEPTH = 40
MAX_ITEMS = 2_000_000

#: The only classes a message may rebuild, besides plain data: the course's configuration
#: dataclasses and models. Rebuilding calls only their dataclass constructors and `Model(cfg)`.
REBUILDABLE = frozenset({
    "toy_models.model:TransformerConfig", "toy_models.model:Transformer",
    "toy_models.sae:SAEConfig", "toy_models.sae:SparseAutoencoder",
    "toy_models.transcoder:TranscoderConfig", "toy_models.transcoder:Transcoder",
    "toy_models.superposition:SuperpositionConfig", "toy_models.superposition:SuperpositionModel",
    "toy_models.data:IOIPrompts",
})

_DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool,
)}


class WireError(Exception):
    """A value cannot be sent, or a message cannot be read."""


def encode(
    value: Any, on_object: Callable[[Any], dict], *, limit: int = MAX_MESSAGE_BYTES,
    differentiable: list[tuple[str, Tensor]] | None = None,
) -> tuple[Any, dict[str, Tensor]]:
    """`value` as a JSON-ready structure and the tensors it refers to by name; `WireError`
    if the tensors come to more than `limit` bytes (checked before they are copied). The
    tensors that require grad are appended to `differentiable`, with their names."""
    tensors: dict[str, Tensor] = {}
    total = 0

    def tensor_ref(tensor: Tensor) -> dict:
        nonlocal total
        if str(tensor.dtype).removeprefix("torch.") not in _DTYPES:
            raise WireError(f"tensors of dtype {tensor.dtype} cannot be sent")
        total += tensor.numel() * tensor.element_size()
        if total > limit:
            raise WireError(f"it holds more than the limit of {limit} bytes of tensors")
        key = str(len(tensors))
        tensors[key] = tensor.detach().cpu().contiguous().clone()  # safetensors refuses shared or strided memory
        if differentiable is not None and tensor.requires_grad:
            differentiable.append((key, tensor))
        return {"__tensor__": key}

    depth = 0

    def walk(item: Any) -> Any:
        nonlocal depth
        depth += 1
        try:
            if depth > MAX_DEPTH:
                raise WireError(f"it nests deeper than {MAX_DEPTH} levels")
            return walk_one(item)
        finally:
            depth -= 1

    def walk_one(item: Any) -> Any:
        if item is None or isinstance(item, (bool, str)):
            return item
        if isinstance(item, int):
            return item
        if isinstance(item, float):  # numpy's float64 too
            return float(item) if math.isfinite(item) else {"__float__": repr(float(item))}
        if isinstance(item, Tensor):
            return tensor_ref(item)
        if type(item).__module__ == "numpy":  # arrays and scalars from numpy: as torch would have them
            return walk(_from_numpy(item))
        if isinstance(item, torch.dtype):
            return {"__dtype__": str(item).removeprefix("torch.")}
        if isinstance(item, torch.Generator):
            return {"__generator__": tensor_ref(item.get_state())}
        if isinstance(item, slice):
            return {"__slice__": [walk(item.start), walk(item.stop), walk(item.step)]}
        if isinstance(item, list):
            return [walk(x) for x in item]
        if isinstance(item, tuple):  # torch.Size and named tuples arrive as plain tuples
            return {"__tuple__": [walk(x) for x in item]}
        if isinstance(item, dict):
            return {"__dict__": [[walk(k), walk(v)] for k, v in item.items()]}
        if isinstance(item, (set, frozenset)):  # a circuit as a set of edges
            return {"__set__": [walk(x) for x in item], "frozen": isinstance(item, frozenset)}
        if type(item).__name__ == "FactoredMatrix" and type(item).__module__.startswith("transformer_lens"):
            return {"__factored__": [tensor_ref(item.A), tensor_ref(item.B)]}
        if type(item).__name__ == "ActivationCache" and type(item).__module__.startswith("transformer_lens"):
            return {"__cache__": {name: tensor_ref(tensor) for name, tensor in item.cache_dict.items()},
                    "model": walk(item.model)}
        if _is_trusted(type(item)) and dataclasses.is_dataclass(item):
            fields = {f.name: walk(getattr(item, f.name)) for f in dataclasses.fields(item)}
            return {"__dataclass__": _qualified_name(type(item)), "fields": fields}
        if _is_trusted(type(item)) and isinstance(item, nn.Module) and dataclasses.is_dataclass(getattr(item, "cfg", None)):
            state = {name: tensor_ref(tensor) for name, tensor in item.state_dict().items()}
            return {"__module__": _qualified_name(type(item)), "cfg": walk(item.cfg), "state": state,
                    "training": item.training}
        return on_object(item)

    return walk(value), tensors


def _from_numpy(item: Any) -> Any:
    """A numpy array as a tensor (unsigned integers wider than a byte as int64, which torch
    can send), a scalar or 0-d array as a Python number; `WireError` for an array of
    anything but numbers, which has no tensor."""
    if not item.shape:  # a scalar, or a 0-d array
        return item.item()
    if item.dtype.kind not in "biuf":
        raise WireError(f"numpy arrays of dtype {item.dtype} cannot be sent")
    if item.dtype.kind == "u" and item.dtype.itemsize > 1:
        item = item.astype("int64")
    return torch.from_numpy(item.copy())


def decode(
    structure: Any, tensors: dict[str, Tensor], on_reference: Callable[[dict], Any], *, accept_modules: bool = False,
) -> Any:
    """The value `encode` described; `{"__remote__"}` and `{"__callback__"}` references are
    given to `on_reference`. Modules are rebuilt only with `accept_modules`: the sandbox
    accepts the grader's models, but the grader builds nothing of the size a learner asks."""

    _check_bounds(structure)

    def walk(item: Any) -> Any:
        if isinstance(item, list):
            return [walk(x) for x in item]
        if not isinstance(item, dict):
            return item
        if "__tensor__" in item:
            return tensors[item["__tensor__"]]
        if "__float__" in item:
            return float(item["__float__"])
        if "__dtype__" in item:
            return _DTYPES[item["__dtype__"]]
        if "__generator__" in item:
            generator = torch.Generator()
            generator.set_state(walk(item["__generator__"]))
            return generator
        if "__slice__" in item:
            return slice(*walk(item["__slice__"]))
        if "__tuple__" in item:
            return tuple(walk(x) for x in item["__tuple__"])
        if "__dict__" in item:
            return _hashing(lambda: {_hashable(walk(k)): walk(v) for k, v in item["__dict__"]})
        if "__set__" in item:
            members = _hashing(lambda: frozenset(_hashable(walk(x)) for x in item["__set__"]))
            return members if item.get("frozen") is True else set(members)
        if "__factored__" in item:
            from transformer_lens import FactoredMatrix

            return FactoredMatrix(*walk(item["__factored__"]))
        if "__cache__" in item:
            from transformer_lens import ActivationCache

            return ActivationCache({name: walk(ref) for name, ref in item["__cache__"].items()}, walk(item["model"]))
        if "__dataclass__" in item:
            cls = _trusted_class(item["__dataclass__"])
            if not dataclasses.is_dataclass(cls):
                raise WireError(f"{item['__dataclass__']} is not a dataclass")
            return cls(**{name: walk(value) for name, value in item["fields"].items()})
        if "__module__" in item and accept_modules:
            cls = _trusted_class(item["__module__"])
            module = cls(walk(item["cfg"]))
            module.load_state_dict({name: walk(ref) for name, ref in item["state"].items()})
            return module.train(item["training"])
        if "__remote__" in item or "__callback__" in item:
            return on_reference(item)
        raise WireError(f"unknown value in message: {sorted(item)[:3]}")

    try:
        return walk(structure)
    except WireError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever about the message is malformed
        raise WireError(f"malformed value in message: {type(error).__name__}: {str(error)[:200]}") from None


def _check_bounds(structure: Any) -> None:
    """`WireError` unless the structure nests at most MAX_DEPTH deep and holds at most
    MAX_ITEMS values (checked without recursion, so a deep one cannot overflow the stack)."""
    count, stack = 0, [(structure, 0)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH or count > MAX_ITEMS:
            raise WireError(f"the answer nests deeper than {MAX_DEPTH} levels or holds more than {MAX_ITEMS} values")
        if isinstance(item, list):
            stack += [(x, depth + 1) for x in item]
        elif isinstance(item, dict):
            stack += [(x, depth + 1) for x in item.values()]


def pack(header: dict, tensors: dict[str, Tensor], *, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """One message: the header as JSON, then the tensors as safetensors."""
    text = json.dumps(header, allow_nan=False).encode()
    blob = save_tensors(tensors) if tensors else b""
    if len(text) + len(blob) > limit:
        raise WireError(f"it is {len(text) + len(blob)} bytes, more than the limit of {limit} bytes")
    return struct.pack("<Q", len(text)) + text + blob


def unpack(message: bytes) -> tuple[dict, dict[str, Tensor]]:
    """The header and tensors of a message from `pack`; `WireError` if it is malformed."""
    try:
        (length,) = struct.unpack_from("<Q", message)
        if length > MAX_HEADER_BYTES:
            raise WireError(f"its header is {length} bytes, more than the limit of {MAX_HEADER_BYTES} bytes")
        header = json.loads(message[8: 8 + length])
        blob = message[8 + length:]
        tensors = load_tensors(blob) if blob else {}
    except Exception as error:  # noqa: BLE001 - whatever is malformed about it
        raise WireError(f"malformed message: {error}") from None
    if not isinstance(header, dict):
        raise WireError("malformed message: the header is not an object")
    return header, tensors


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_trusted(cls: type) -> bool:
    """One of the rebuildable classes itself (a learner's subclass, or a class that merely
    claims its module, travels as a reference)."""
    name = _qualified_name(cls)
    return name in REBUILDABLE and _trusted_class(name) is cls


def _trusted_class(name: Any) -> type:
    if name not in REBUILDABLE:
        raise WireError(f"refusing to rebuild an object of type {str(name)[:100]!r}")
    module_name, _, qualname = name.partition(":")
    return getattr(importlib.import_module(module_name), qualname)


# --------------------------------------------------------------------------- framing

def send(sock: socket.socket, header: dict, tensors: dict | None = None, *, limit: int = MAX_MESSAGE_BYTES) -> None:
    message = pack(header, tensors or {}, limit=limit)
    sock.sendall(struct.pack("<Q", len(message)) + message)


def receive(sock: socket.socket, *, limit: int) -> tuple[dict, dict]:
    """The next message; `EOFError` if the other side is gone, `WireError` if it sends
    something malformed or larger than `limit` bytes."""
    (length,) = struct.unpack("<Q", _read_exactly(sock, 8))
    if length > limit:
        raise WireError(f"a message of {length} bytes is larger than the limit of {limit} bytes")
    return unpack(_read_exactly(sock, length))


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, missing = [], n
    while missing:
        chunk = sock.recv(min(missing, 2**20))
        if not chunk:
            raise EOFError("the connection was closed")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _hashing(build: Callable[[], Any]) -> Any:
    """A dict or set whose keys came over the wire: `WireError`, not a TypeError from deep
    inside decoding, when one of them cannot be hashed (a dict sent as a key)."""
    try:
        return build()
    except TypeError as error:
        raise WireError(f"a dict key or set member that cannot be hashed ({error})") from None
