"""Model folders of other libraries, opened with those libraries' own loaders.

* **diffusers** (``save_pretrained``): a folder with ``config.json`` naming the class in
  ``_class_name`` (``AutoencoderKL``, ``AutoencoderTiny``, ...) and its weights; opened with
  ``diffusers.<class>.from_pretrained(folder)`` (safetensors, nothing unpickled).
* **pythae** (``model.save``): a folder with ``model_config.json`` and ``model.pt``; opened with
  ``pythae.models.AutoModel.load_from_folder(folder)``, whose ``torch.load`` of the weights runs
  with ``weights_only=True`` (torch >= 2.6). A folder that holds pickled custom networks
  (``encoder.pkl`` / ``decoder.pkl``) is refused: loading them would run their code.

Both are recorded by the fingerprint of the folder's files, so a resumed run checks the weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from latentdiag.errors import ModelError

__all__ = ["DIFFUSERS_KINDS", "folder_kind", "load_library_folder"]

# diffusers classes whose encoder latentdiag reads (see runners.adapters).
DIFFUSERS_KINDS = ("AutoencoderKL", "AutoencoderTiny", "AsymmetricAutoencoderKL", "VQModel")


def folder_kind(folder: str | os.PathLike[str]) -> str | None:
    """``"diffusers"`` or ``"pythae"`` for those libraries' model folders, else None."""
    p = Path(folder)
    config = p / "config.json"
    if config.is_file():
        try:
            meta = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = None
        if isinstance(meta, dict) and "_class_name" in meta and "_diffusers_version" in meta:
            return "diffusers"
    if (p / "model_config.json").is_file() and (p / "model.pt").is_file():
        return "pythae"
    return None


def load_library_folder(folder: str | os.PathLike[str], kind: str) -> Any:
    """The model saved in ``folder`` by diffusers or pythae, in eval mode on the CPU.

    Raises:
        ModelError: The library is not installed, the class is not an autoencoder latentdiag
            reads, the folder holds pickled code, or the library fails to load it.
    """
    p = Path(folder)
    if kind == "diffusers":
        try:
            import diffusers
        except ImportError:
            raise ModelError(
                f"{p} is a diffusers model folder; reading it needs diffusers: pip install "
                "diffusers"
            ) from None
        name = json.loads((p / "config.json").read_text(encoding="utf-8"))["_class_name"]
        cls = getattr(diffusers, str(name), None)
        if cls is None or name not in DIFFUSERS_KINDS:
            raise ModelError(
                f"{p} holds a diffusers {name}, not an autoencoder; latentdiag embeds with "
                f"{', '.join(DIFFUSERS_KINDS)} folders (e.g. the vae/ subfolder of a pipeline)."
            )
        from diffusers.utils import logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # not its advice to install accelerate on every load
        try:
            return cls.from_pretrained(str(p)).eval()
        except Exception as exc:  # diffusers raises many kinds for a damaged folder
            raise ModelError(f"diffusers cannot load {p} as {name}: {_short(exc)}.") from None
        finally:
            dlog.set_verbosity(level)
    if kind == "pythae":
        pickled = [n for n in ("encoder.pkl", "decoder.pkl") if (p / n).exists()]
        if pickled:
            raise ModelError(
                f"{p} holds pickled custom networks ({', '.join(pickled)}); loading them would "
                "run their code. Build the model in a factory instead (pkg.module:factory, "
                "docs/embed.md) and pass --model-kwargs / --weights."
            )
        try:
            from pythae.models import AutoModel
        except ImportError:
            raise ModelError(
                f"{p} is a pythae model folder; reading it needs pythae: pip install pythae"
            ) from None
        try:
            return AutoModel.load_from_folder(str(p)).eval()
        except Exception as exc:  # pythae raises many kinds for a damaged folder
            raise ModelError(f"pythae cannot load {p}: {_short(exc)}.") from None
    raise AssertionError(kind)  # pragma: no cover


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
