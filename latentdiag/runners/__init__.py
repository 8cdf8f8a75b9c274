"""Model runners: one interface over ONNX, TorchScript, torch.export and Python factories.

:func:`open_runner` looks at MODEL and returns a :class:`Runner`::

    runner = open_runner("encoder.onnx", device="auto")
    print(runner.device)                       # onnxruntime CPUExecutionProvider
    mu, logvar = runner.run(images, labels)     # (B, d) float32 each

Kinds, detected from MODEL:

* ``*.onnx`` → onnxruntime;
* ``*.pt`` / ``*.pth`` / ``*.jit`` / ``*.ts`` holding a TorchScript archive → ``torch.jit.load``;
* ``*.pt2`` (or any torch.export archive) → ``torch.export.load``;
* ``pkg.module:factory`` (with ``weights=``) → the factory's module;
* a ``torch.nn.Module`` object → run as it is (``info=`` may say it is conditional, its size,
  its partitions).

A reference run directory (from ``latentdiag train``) is opened by the command line, which
loads its encoder through ``reference_models`` and hands the module here.

Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from latentdiag.errors import ModelError
from latentdiag.runners.base import InputSpec, Runner

__all__ = ["MODEL_KINDS", "InputSpec", "Runner", "detect_kind", "open_runner"]

MODEL_KINDS = (
    "an .onnx file, a TorchScript file (.pt, .pth, .jit), a torch.export file (.pt2), "
    "a reference run directory from `latentdiag train`, a diffusers or pythae model folder, "
    "or pkg.module:factory with --weights"
)
_TORCHSCRIPT_SUFFIXES = {".pt", ".pth", ".jit", ".ts", ".torchscript"}
_SPATIAL = ("flatten", "mean")


def detect_kind(model: str | os.PathLike[str]) -> str:
    """What kind of model MODEL names.

    Returns:
        ``onnx``, ``torchscript``, ``torch.export``, ``factory``, or for a directory
        ``diffusers`` / ``pythae`` (those libraries' saved models) or ``reference`` (a run of
        ``latentdiag train``).

    Raises:
        ModelError: MODEL does not exist or is of a kind latentdiag cannot run.
    """
    from latentdiag.runners.torch import FACTORY_PATTERN

    text = os.fspath(model)
    p = Path(text)
    if not p.exists():
        if FACTORY_PATTERN.match(text):
            return "factory"
        raise ModelError(f"model file {p} does not exist; MODEL is {MODEL_KINDS}.")
    if p.is_dir():
        from latentdiag.runners.folders import folder_kind

        return folder_kind(p) or "reference"
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        raise ModelError(
            f"{p} holds weights only; give the model's code as pkg.module:factory and pass "
            f"--weights {p}."
        )
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ModelError(
                f"{p} is a damaged archive ({exc}); it cannot be read as a TorchScript or "
                "torch.export model. Save the model again."
            ) from None
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return "torch.export"
        if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            raise ModelError(
                f"{p} is a torch.save checkpoint (pickled objects), not a runnable model; give "
                f"the model's code as pkg.module:factory with --weights {p}, or save the model "
                "with torch.jit.save or torch.export.save."
            )
    elif suffix in _TORCHSCRIPT_SUFFIXES or suffix == ".pt2":
        raise ModelError(
            f"{p} is neither a TorchScript nor a torch.export archive (perhaps a legacy pickled "
            f"checkpoint); give the model's code as pkg.module:factory with --weights {p}."
        )
    raise ModelError(
        f"{p} is of an unknown model kind ({suffix or 'no suffix'}); MODEL is {MODEL_KINDS}."
    )


def open_runner(
    model: Any,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    providers: Sequence[str] | None = None,
    layout: str | None = None,
    mu_output: str | None = None,
    logvar_output: str | None = None,
    logvar_kind: str | None = None,
    spatial: str = "flatten",
    model_kwargs: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    name: str | None = None,
    kind: str = "module",
    model_sha256: str | None = None,
) -> Runner:
    """Load MODEL and return a runner for it.

    Args:
        model: A path or ``pkg.module:factory`` string (see the module docstring), or a
            ``torch.nn.Module``.
        weights: Weights for a factory (safetensors or a state dict).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        providers: onnxruntime execution providers named explicitly (ONNX only).
        layout: ``nchw``, ``nhwc`` (or ``flat`` for torch models): overrides what is inferred.
        mu_output: ONNX output holding the mean.
        logvar_output: ONNX output holding the log-variance; ``none`` for none.
        logvar_kind: What that output holds: ``logvar``, ``log_sigma``, ``sigma``, ``variance``.
        spatial: ``flatten`` or ``mean``: how spatial latents (C × H × W) become vectors.
        model_kwargs: Keyword arguments for the factory.
        info: For a module: ``conditional``, ``channels``, ``size``, ``partitions``.
        name: For a module: what it is, for provenance (e.g. the run directory it came from).
        kind: For a module: the model kind recorded in provenance (e.g. ``reference``).
        model_sha256: For a module: sha256 of the files it came from.

    Returns:
        The runner.

    Raises:
        ModelError: MODEL is missing, unreadable, unsafe or of an unknown kind, or an option
            does not apply to it.
    """
    if spatial not in _SPATIAL:
        raise ModelError(f"--spatial must be flatten or mean; got {spatial!r}.")
    if layout is not None and layout.lower() not in ("nchw", "nhwc", "flat"):
        raise ModelError(f"--layout must be nchw, nhwc or flat; got {layout!r}.")
    is_module = not isinstance(model, (str, os.PathLike))
    kind = kind if is_module else detect_kind(model)
    onnx_only = {
        "--mu-output": mu_output,
        "--logvar-output": logvar_output,
        "--logvar-kind": logvar_kind,
        "--providers": providers,
    }
    if kind != "onnx":
        given = [flag for flag, v in onnx_only.items() if v]
        if given:
            raise ModelError(f"{given[0]} applies to .onnx models only; MODEL is a {kind} model.")
    if is_module:
        if weights is not None:
            raise ModelError("--weights applies to pkg.module:factory models only.")
        from latentdiag.runners.torch import module_runner

        return module_runner(
            model,
            model=name or type(model).__name__,
            info=info,
            device=device,
            layout=layout,
            spatial=spatial,
            model_sha256=model_sha256,
            kind=kind,
        )
    if weights is not None and kind != "factory":
        raise ModelError(
            f"--weights applies to pkg.module:factory models only; MODEL is a {kind} model, "
            "which carries its own weights."
        )
    if kind == "onnx":
        if layout is not None and layout.lower() == "flat":
            raise ModelError(
                "--layout flat applies to torch models; an ONNX graph declares its rank."
            )
        from latentdiag.runners.onnx import OnnxRunner

        return OnnxRunner(
            model,
            device=device,
            providers=providers,
            layout=layout,
            mu_output=mu_output,
            logvar_output=logvar_output,
            logvar_kind=logvar_kind,
            spatial=spatial,
        )
    if kind == "torchscript":
        from latentdiag.runners.torch import load_torchscript

        return load_torchscript(model, device=device, layout=layout, spatial=spatial)
    if kind == "torch.export":
        from latentdiag.runners.torch import load_exported

        return load_exported(model, device=device, layout=layout, spatial=spatial)
    if kind == "factory":
        from latentdiag.runners.torch import load_factory

        return load_factory(
            os.fspath(model),
            weights=weights,
            model_kwargs=model_kwargs,
            device=device,
            layout=layout,
            spatial=spatial,
        )
    if kind in ("diffusers", "pythae"):
        from latentdiag.job import path_fingerprint
        from latentdiag.runners.folders import load_library_folder
        from latentdiag.runners.torch import module_runner

        return module_runner(
            load_library_folder(model, kind),
            model=os.fspath(model),
            device=device,
            layout=layout,
            spatial=spatial,
            model_sha256=path_fingerprint(model),
            kind=kind,
        )
    raise ModelError(
        f"{model} is a folder, but not a diffusers model folder (config.json with _class_name), "
        "a pythae one (model_config.json and model.pt) or a reference run: a run directory is "
        "opened by `latentdiag embed`, or in Python with reference_models.load_encoder(run_dir) "
        "and open_runner(module, info=info)."
    )
