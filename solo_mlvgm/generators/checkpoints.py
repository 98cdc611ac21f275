"""Reading pickled checkpoints without running code from them: a restricted unpickler.

A pickle can name any importable callable (``os.system``) and call it while loading. ``load_restricted``
resolves every global the file names through an allowlist and nothing else: tensors and numpy arrays are
rebuilt by the usual functions, and the foreign classes a checkpoint format needs are replaced by inert
stand-ins the caller passes (which only record the data they are given). Nothing is imported by name, so a
foreign package (e.g. NVIDIA's ``dnnlib``, ``torch_utils``) never enters ``sys.modules``, and source code
embedded in a pickle stays a string.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators.base import one_line


class UnsafeCheckpointError(ConfigError):
    """The file names a global outside the allowlist (or is otherwise not a checkpoint we can read)."""


def _storage_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` (how a tensor's storage pickles) with ``weights_only=True``:
    the bytes are a nested ``torch.save`` file, which could otherwise name any global too."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_from_type(func: Callable, new_type: type, args: tuple, state: Any) -> Any:
    """``torch._tensor._rebuild_from_type_v2`` for plain tensors and parameters only."""
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafeCheckpointError(f"tensor subclass {new_type!r} is not allowed in a checkpoint")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _numpy_multiarray() -> ModuleType:
    try:
        return importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


_MULTIARRAY = _numpy_multiarray()

# Globals that rebuild plain data: tensors (as pickled by torch, directly or in module state), numpy arrays
# (TensorFlow-era pickles; numpy 1 wrote ``numpy.core``, numpy 2 writes ``numpy._core``) and containers.
DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocol-2 pickles (torch.save) name Python 2's module
    ("__builtin__", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{
        (f"numpy.{core}.multiarray", name): getattr(_MULTIARRAY, name)
        for core in ("core", "_core")
        for name in ("_reconstruct", "scalar")
    },
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals through ``allowed`` only; anything else fails with the global's name."""

    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any], source: str) -> None:
        super().__init__(file)
        self.allowed, self.source = allowed, source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"'{self.source}' refers to {module}.{name}, which a checkpoint may not contain "
                "(only tensors, arrays and known checkpoint classes are allowed; nothing in the file is run)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"'{self.source}' uses persistent ids; it is not a plain pickle")


def load_restricted(path: str | Path, stand_ins: Mapping[tuple[str, str], Any]) -> Any:
    """Unpickle ``path`` with ``DATA_GLOBALS`` plus the format's ``stand_ins`` as the only globals."""
    allowed = {**DATA_GLOBALS, **stand_ins}
    with open(path, "rb") as file:
        return _load(lambda: RestrictedUnpickler(file, allowed, str(path)).load(), path, "pickle")


def _load(load: Callable[[], Any], path: str | Path, what: str) -> Any:
    """``load()``, every failure one ``ConfigError`` line naming the file: a global outside the allowlist
    or a stand-in refusing its data as they are, anything else (a truncated or foreign file) as unreadable."""
    try:
        return load()
    except ConfigError as err:
        if str(path) in str(err):
            raise
        raise UnsafeCheckpointError(f"'{path}': {err}") from None
    except RecursionError:
        raise ConfigError(f"'{path}' nests its objects too deeply to be a checkpoint") from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file is a user error
        raise ConfigError(
            f"'{path}' is not a readable {what}: {type(err).__name__}: {one_line(err)}"
        ) from None


# torch.save's storage classes, as its zip files name them, and the element type each stands for
_STORAGE_DTYPES = {
    f"{name}Storage": dtype
    for name, dtype in {
        "Float": torch.float32,
        "Double": torch.float64,
        "Half": torch.float16,
        "BFloat16": torch.bfloat16,
        "Long": torch.int64,
        "Int": torch.int32,
        "Short": torch.int16,
        "Char": torch.int8,
        "Byte": torch.uint8,
        "Bool": torch.bool,
    }.items()
}


def _rebuild_strided(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` on a flat tensor standing for the storage (a copy). A tensor
    never has more elements than its storage (no stride-0 expansion of a few bytes into gigabytes)."""
    numel = 1
    for dim in size:
        numel *= int(dim)
    if numel > storage.numel():
        raise UnsafeCheckpointError(
            f"a tensor of size {tuple(size)} claims more elements than its storage holds ({storage.numel()})"
        )
    return storage.as_strided(tuple(size), tuple(stride), int(offset)).clone()


class _TorchZipUnpickler(RestrictedUnpickler):
    """``data.pkl`` of a ``torch.save`` zip file: storages come from the archive's ``data/<key>`` records."""

    def __init__(
        self, file: io.BufferedIOBase, allowed: Mapping, source: str, archive: Any, prefix: str
    ) -> None:
        super().__init__(file, allowed, source)
        self.archive, self.prefix = archive, prefix

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"'{self.source}' has a persistent id other than a storage: {pid!r}")
        dtype, key = pid[1], str(pid[2])
        if not isinstance(dtype, torch.dtype):
            raise UnsafeCheckpointError(f"'{self.source}' has a storage of unknown type {dtype!r}")
        data = bytearray(self.archive.read(_stored(self.archive, f"{self.prefix}data/{key}")))
        return torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)


def _stored(archive: Any, name: str) -> str:
    """``name`` if the archive stores it uncompressed, as torch.save does: then it cannot expand beyond the
    file's own size when read."""
    import zipfile

    if archive.getinfo(name).compress_type != zipfile.ZIP_STORED:
        raise UnsafeCheckpointError(f"'{name}' is compressed: torch.save never compresses its records")
    return name


def load_restricted_torch(path: str | Path, stand_ins: Mapping[tuple[str, str], Any]) -> Any:
    """A ``torch.save`` file (zip format) unpickled with ``DATA_GLOBALS`` plus ``stand_ins`` as the only
    globals: pickled modules become the caller's inert stand-ins, tensors are copied out of the archive, and
    nothing the file names is imported or run."""
    import zipfile

    if not Path(path).is_file():
        raise ConfigError(f"no file at '{path}'")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"'{path}' is not a torch.save file (zip format)")
    allowed = {
        **DATA_GLOBALS,
        **{("torch", name): dtype for name, dtype in _STORAGE_DTYPES.items()},
        ("torch", "device"): torch.device,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_strided,
        **stand_ins,
    }
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ConfigError(f"'{path}' is not a torch.save file (no single <name>/data.pkl record)")
        prefix = pickles[0][: -len("data.pkl")]

        def load() -> Any:
            file = io.BytesIO(archive.read(_stored(archive, pickles[0])))
            return _TorchZipUnpickler(file, allowed, str(path), archive, prefix).load()

        return _load(load, path, "torch file")
