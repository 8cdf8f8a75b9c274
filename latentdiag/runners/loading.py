"""Loading model files and weights without running code that was not asked for.

* :func:`check_pt2_archive` looks inside a torch.export archive before ``torch.export.load``
  does, and refuses entries that would be unpickled into Python objects.
* :func:`load_state_dict` reads safetensors, or ``torch.save`` state dicts with
  ``weights_only=True``, and names the keys and shapes that do not fit.
* :func:`import_factory` imports ``pkg.module:factory`` — code the user named on purpose.
* :func:`file_sha256` / :func:`folder_sha256` identify a model by its bytes for provenance
  and for resuming.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from latentdiag.errors import ModelError

__all__ = [
    "check_pt2_archive",
    "file_sha256",
    "folder_sha256",
    "import_factory",
    "load_state_dict",
]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "ema")
_PREFIXES = ("module.", "model.", "_orig_mod.", "encoder_model.")


def file_sha256(path: Path, h: Any = None) -> str:
    """sha256 of a file's bytes (fed into ``h`` when given)."""
    h = hashlib.sha256() if h is None else h
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return str(h.hexdigest())


def folder_sha256(folder: str | os.PathLike[str]) -> str:
    """sha256 over a run directory's configuration and weights.

    The files hashed are ``config.json`` and every ``*.safetensors`` (names and bytes, in
    sorted order), so new weights change it and logs or reports written beside them do not.
    """
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and (p.name == "config.json" or p.suffix == ".safetensors"):
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            file_sha256(p, h)
    return h.hexdigest()


def check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` would unpickle code from.

    ``torch.export.load`` unpickles some entries with ``weights_only=False`` (pickled
    weights and constants, sample inputs that fail the safe loader, opaque objects). Each such
    entry must load with ``torch.load(weights_only=True)``; opaque Python objects and compiled
    (AOTInductor) code are refused outright.

    Raises:
        ModelError: The archive is unreadable or holds something that could run code.
    """
    import json

    import torch

    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path} is not a torch.export archive ({exc}).") from None
    with z:
        names = z.namelist()
        pickled: set[str] = set()
        for name in names:
            low = name.lower()
            if "/aotinductor/" in low or low.endswith((".so", ".dll", ".dylib")):
                raise ModelError(
                    f"{path} holds compiled code ({name}); latentdiag runs torch.export "
                    "programs only, not AOTInductor packages."
                )
            if low.endswith(".pt"):
                pickled.add(name)
            if low.endswith("_config.json") and (
                "/data/weights/" in low or "/data/constants/" in low
            ):
                folder = name.rsplit("/", 1)[0]
                try:
                    config = json.loads(z.read(name)).get("config", {})
                except (ValueError, AttributeError):
                    raise ModelError(f"{path}: {name} is not valid JSON.") from None
                for meta in config.values():
                    entry = f"{folder}/{meta.get('path_name', '')}"
                    if str(meta.get("path_name", "")).startswith(("custom_obj", "opaque_obj")):
                        raise ModelError(
                            f"{path} holds a pickled Python object ({entry}) that loading would "
                            "unpickle, which could run code; latentdiag refuses it. Export a "
                            "model whose constants are tensors."
                        )
                    if meta.get("use_pickle"):
                        pickled.add(entry)
        for name in sorted(pickled):
            if name not in names:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the safe loader's notes on protocols
                    torch.load(io.BytesIO(z.read(name)), weights_only=True, map_location="cpu")
            except Exception:  # the safe unpickler refuses: the entry holds Python objects
                raise ModelError(
                    f"{path} holds {name}, which does not load with torch.load("
                    "weights_only=True): it holds pickled Python objects that could run code, "
                    "and latentdiag refuses it."
                ) from None


def import_factory(target: str) -> Callable[..., Any]:
    """Import ``pkg.module:factory`` (the current folder is searched too, like ``python -m``).

    Raises:
        ModelError: The module cannot be imported, or has no such callable.
    """
    module_name, _, attr = target.partition(":")
    added = False
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
        added = True
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"cannot import module {module_name!r} of MODEL {target!r} ({exc}); install it, or "
            "run from the folder that holds it, or add that folder to PYTHONPATH."
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(
                f"module {module_name!r} has no attribute {attr!r} (MODEL {target!r}); name a "
                "function or class that builds the model."
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(
            f"{target!r} is not callable; name a function or class that builds the model."
        )
    return obj


def load_state_dict(module: Any, weights: str | os.PathLike[str]) -> None:
    """Load weights into ``module`` without unpickling code.

    Accepts a safetensors file, or a file written by ``torch.save`` holding a state dict
    (possibly wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``, with a ``module.`` /
    ``model.`` prefix), read with ``torch.load(weights_only=True)``.

    Raises:
        ModelError: The file is missing, holds pickled objects, or its keys or shapes do not
            match the module (the first few differences are named).
    """
    import pickle

    import torch

    p = Path(weights)
    if not p.is_file():
        raise ModelError(f"weights file {p} does not exist.")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(p))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{p} is not a readable safetensors file ({exc}).") from None
    else:
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ModelError(
                f"{p} holds pickled Python objects besides tensors, and latentdiag loads "
                "weights only with torch.load(weights_only=True), which could otherwise run "
                "code; save a plain state dict (torch.save(model.state_dict(), ...)) or a "
                "safetensors file."
            ) from None
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise ModelError(
                f"{p} is not a torch or safetensors weights file "
                f"({' '.join(str(exc).split())[:120]})."
            ) from None
    for _ in range(3):  # unwrap {"state_dict": {...}, "epoch": ...} and the like
        if isinstance(state, Mapping):
            inner = next(
                (state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None
            )
            if inner is not None and not any(torch.is_tensor(v) for v in state.values()):
                state = inner
                continue
        break
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelError(f"{p} does not hold a state dict (a mapping of names to tensors).")
    expected = module.state_dict()
    state = dict(state)
    for prefix in _PREFIXES:
        if set(state) != set(expected) and state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:5])}")
        if shapes:
            parts.append(f"shape mismatches (file vs model): {', '.join(shapes[:3])}")
        raise ModelError(
            f"the weights in {p} do not fit the model: {'; '.join(parts)}; check that the "
            "factory builds the same architecture the weights were saved from."
        )
    module.load_state_dict(state, strict=True)
