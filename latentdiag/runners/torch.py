"""Running PyTorch encoders: TorchScript, torch.export, ``pkg.module:factory`` and modules.

* TorchScript (``torch.jit.save``): loaded with ``torch.jit.load``, whose archive holds
  TorchScript code and tensors only (its unpickler rebuilds no Python objects). The scripted
  ``encode`` method is called when the module exports one, else ``forward``.
* torch.export (``torch.export.save``, ``.pt2``): every pickled entry of the archive is first
  checked to load with ``weights_only=True``; archives holding pickled Python objects or
  compiled code are refused before ``torch.export.load`` sees them.
* ``pkg.module:factory``: the factory is imported and called (with ``model_kwargs``); weights
  come from ``--weights``, a safetensors file or a state dict read with
  ``torch.load(weights_only=True)``. ``encode(x)`` is called when the module has one.
* A module already in memory (a reference run's encoder, loaded by the command line).

A conditional encoder (a second required argument, or one named like a label) gets the data's
labels as int64 (B,), or as a float one-hot (B, K) where a torch.export graph says so.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.errors import ModelError
from latentdiag.runners.adapters import read_output
from latentdiag.runners.base import InputSpec, LabelKind, Layout, Runner
from latentdiag.runners.device import resolve_torch_device, torch_device_text
from latentdiag.runners.loading import (
    check_pt2_archive,
    file_sha256,
    folder_sha256,
    import_factory,
    load_state_dict,
)

__all__ = [
    "FACTORY_PATTERN",
    "TorchRunner",
    "check_pt2_archive",
    "folder_sha256",
    "import_factory",
    "load_exported",
    "load_factory",
    "load_state_dict",
    "load_torchscript",
    "module_runner",
]

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_LABEL_PARAMS = {
    "y", "c", "label", "labels", "cond", "condition", "class_labels", "classes", "modality",
    "context", "domain", "y_onehot", "c_onehot",
}  # fmt: skip


def _layout(layout: str | None) -> Layout:
    if layout is None:
        return "NCHW"
    key = layout.strip().lower()
    if key in ("nchw", "nhwc"):
        return "NCHW" if key == "nchw" else "NHWC"
    if key == "flat":
        return "flat"
    raise ModelError(f"--layout must be nchw, nhwc or flat; got {layout!r}.")


class TorchRunner(Runner):
    """A PyTorch encoder.

    Args:
        call: What to call with ``(x)`` or ``(x, labels)`` (a bound ``encode``, a module).
        kind: ``torchscript``, ``torch.export``, ``factory`` or ``module``.
        model: What was loaded, for provenance.
        spec: The input spec (often only the layout: torch modules do not declare shapes).
        device: Torch device string (``cpu``, ``cuda:0``, ``mps``).
        input_dtype: Floating dtype of the model's parameters; inputs are cast to it.
        method: Name of the method called, for provenance.
        model_sha256: sha256 of the model's file(s).
        partitions: Named latent subspaces declared by the model.
        spatial: ``flatten`` or ``mean`` for spatial latents.
    """

    def __init__(
        self,
        call: Callable[..., Any],
        *,
        kind: str,
        model: str,
        spec: InputSpec,
        device: str,
        input_dtype: Any = None,
        method: str = "forward",
        model_sha256: str | None = None,
        partitions: Mapping[str, tuple[int, int]] | None = None,
        spatial: str = "flatten",
    ) -> None:
        import torch

        super().__init__(
            kind=kind,
            model=model,
            spec=spec,
            device=torch_device_text(device),
            model_sha256=model_sha256,
            partitions=dict(partitions or {}),
            outputs={"method": method},
            spatial=spatial,
        )
        self._call = call
        self._device = torch.device(device)
        self._dtype = input_dtype or torch.float32
        self._declared_partitions = bool(partitions)
        self._ran = False
        self.torch_version = str(torch.__version__)

    def _forward(
        self, images: np.ndarray, labels: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        spec = self.spec
        x = torch.from_numpy(images)  # (B, C, H, W)
        if spec.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        elif spec.layout == "flat":
            x = x.reshape(x.shape[0], -1)
        elif spec.layout == "NHW":
            x = x[:, 0]
        x = x.to(self._device, dtype=self._dtype, non_blocking=True).contiguous()
        args: tuple[Any, ...] = (x,)
        if spec.conditional and labels is not None:
            y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(self._device)
            if spec.label_kind == "onehot":
                k = int(spec.num_classes or 0)
                if labels.size and int(labels.max()) >= k:
                    raise ModelError(
                        f"the model's one-hot label input takes {k} classes, but the data has "
                        f"label {int(labels.max())}; the data's labels must match the classes "
                        "the model was trained on."
                    )
                y = torch.nn.functional.one_hot(y, k).to(self._dtype)
            elif spec.label_rank == 2:
                y = y.reshape(-1, 1)
            args = (x, y)
        try:
            with torch.inference_mode():
                out = self._call(*args)
                mu, logvar, parts, adapter = read_output(
                    out, spatial=self.spatial, channels_last=spec.layout == "NHWC"
                )
                mu_np = mu.float().cpu().numpy()
                lv_np = None if logvar is None else logvar.float().cpu().numpy()
        except torch.OutOfMemoryError:
            raise ModelError(
                f"out of memory on {self.device} with a batch of {x.shape[0]}; lower --batch-size."
            ) from None
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            if self._ran:
                raise
            # TorchScript puts a traceback first and the error itself on the last line.
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            text = " ".join((lines[-1] if lines else type(exc).__name__).split())
            raise ModelError(
                f"the model failed on its first batch, of shape {tuple(x.shape)} "
                f"({spec.layout}): {text[:300]}; "
                + expected_input_hint(self._call, tuple(int(v) for v in images.shape))
            ) from None
        if not self._ran:
            self._ran = True
            self.outputs["adapter"] = adapter
            if parts and not self._declared_partitions:
                self.partitions = dict(parts)
        return mu_np, lv_np

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["torch_version"] = self.torch_version
        return info


def _param_dtype(module: Any) -> Any:
    import torch

    params = getattr(module, "parameters", None)
    if params is None:
        return torch.float32
    for p in params():
        if p.is_floating_point():
            return p.dtype if p.dtype in (torch.float16, torch.bfloat16) else torch.float32
    return torch.float32


def _wants_labels(fn: Any) -> bool:
    """Whether a Python callable takes labels after the images."""
    forward = getattr(fn, "forward", None)
    if callable(forward) and not inspect.ismethod(fn):
        fn = forward  # a module: its __call__ takes (*args, **kwargs), forward says more
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    ]
    if len(params) < 2:
        return False
    second = params[1]
    return second.default is inspect.Parameter.empty or second.name.lower() in _LABEL_PARAMS


def _script_wants_labels(method: Any) -> bool:
    """Whether a TorchScript method takes labels after the images (from its schema)."""
    args = [a for a in method.schema.arguments if a.name != "self"]
    if len(args) < 2:
        return False
    second = args[1]
    return (not second.has_default_value()) or second.name.lower() in _LABEL_PARAMS


def _spec(layout: str | None, conditional: bool, **kw: Any) -> InputSpec:
    lay = _layout(layout)
    if conditional:
        kw.setdefault("label_name", "labels")
        kw.setdefault("label_kind", "index")
    return InputSpec(layout=lay, **kw)


def load_torchscript(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    layout: str | None = None,
    spatial: str = "flatten",
) -> TorchRunner:
    """A TorchScript file (``torch.jit.save``).

    Raises:
        ModelError: The file is missing or not a TorchScript archive.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {p} does not exist.")
    dev = resolve_torch_device(device)
    try:
        module = torch.jit.load(str(p), map_location=dev)
    except Exception as exc:
        # A damaged archive raises anything from C++ (RuntimeError, IndexError "not in the
        # map", BadZipFile, ...): each means the file cannot be read.
        raise ModelError(
            f"{p} is not a TorchScript archive ({' '.join(str(exc).split())[:120]}); save the "
            "model with torch.jit.save(torch.jit.script(model), ...), or give its code as "
            "pkg.module:factory with --weights."
        ) from None
    module.eval()
    has_encode = hasattr(module, "encode")
    method = module.encode if has_encode else module.forward
    conditional = _script_wants_labels(method)
    return TorchRunner(
        module.encode if has_encode else module,
        kind="torchscript",
        model=str(p),
        spec=_spec(layout, conditional),
        device=dev,
        input_dtype=_param_dtype(module),
        method="encode" if has_encode else "forward",
        model_sha256=file_sha256(p),
        spatial=spatial,
    )


def load_exported(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    layout: str | None = None,
    spatial: str = "flatten",
) -> TorchRunner:
    """A torch.export program (``torch.export.save``, ``.pt2``).

    The image input's shape and dtype, a fixed batch size and a label input are read from the
    exported graph.

    Raises:
        ModelError: The file is missing, unsafe, or not a torch.export archive.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {p} does not exist.")
    check_pt2_archive(p)
    dev = resolve_torch_device(device)
    try:
        ep = torch.export.load(str(p))
    except Exception as exc:  # torch raises many types for archives it cannot read
        raise ModelError(
            f"{p} is not a torch.export archive this torch ({torch.__version__}) reads "
            f"({' '.join(str(exc).split())[:160]}); save it with torch.export.save."
        ) from None
    vals = {n.name: n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder"}
    users = [vals.get(name) for name in ep.graph_signature.user_inputs]
    if not users or users[0] is None or len(users) > 2:
        raise ModelError(
            f"{p} takes {len(users)} inputs; latentdiag feeds an image batch and, for a "
            "conditional encoder, labels."
        )
    kw = _exported_spec(users[0], users[1] if len(users) == 2 else None, layout)
    module = ep.module()
    try:
        module = module.to(dev)
    except (RuntimeError, NotImplementedError):
        if dev != "cpu":
            raise ModelError(
                f"{p} cannot move to {dev}; export it on that device or use --device cpu."
            ) from None
    return TorchRunner(
        module,
        kind="torch.export",
        model=str(p),
        spec=InputSpec(name=ep.graph_signature.user_inputs[0], **kw),
        device=dev,
        input_dtype=users[0].dtype,
        method="forward",
        model_sha256=file_sha256(p),
        spatial=spatial,
    )


def _exported_spec(image: Any, label: Any, layout: str | None) -> dict[str, Any]:
    import torch

    def dim(v: Any) -> int | None:
        return int(v) if isinstance(v, int) else None

    shape = [dim(s) for s in image.shape]
    kw: dict[str, Any] = {"batch": shape[0] if shape else None}
    kw["dtype"] = str(image.dtype).replace("torch.", "")
    rank = len(shape)
    if rank == 4:
        if layout is not None:
            lay = _layout(layout)
        else:
            lay = "NHWC" if shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4) else "NCHW"
        if lay == "NHWC":
            kw.update(layout="NHWC", channels=shape[3], height=shape[1], width=shape[2])
        else:
            kw.update(layout="NCHW", channels=shape[1], height=shape[2], width=shape[3])
    elif rank == 3:
        kw.update(layout="NHW", channels=1, height=shape[1], width=shape[2])
    elif rank == 2:
        kw.update(layout="flat", features=shape[1])
    else:
        raise ModelError(
            f"the exported program's image input has rank {rank} ({list(image.shape)}); "
            "latentdiag feeds rank 4 (B, C, H, W), rank 3 (B, H, W) or rank 2 (B, C·H·W)."
        )
    if label is not None:
        kind: LabelKind = "onehot" if label.dtype.is_floating_point else "index"
        kw.update(
            label_name="labels",
            label_kind=kind,
            label_dtype=str(label.dtype).replace("torch.", ""),
            label_rank=len(label.shape),
            num_classes=dim(label.shape[1]) if kind == "onehot" and len(label.shape) == 2 else None,
        )
        if kind == "index" and label.dtype not in (torch.int64, torch.int32):
            raise ModelError(f"the exported program's label input has dtype {label.dtype}.")
    return kw


def load_factory(
    target: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    device: str = "auto",
    layout: str | None = None,
    spatial: str = "flatten",
) -> TorchRunner:
    """``pkg.module:factory`` plus optional weights.

    Raises:
        ModelError: The factory cannot be imported or does not build a model; the weights do
            not load.
    """
    import torch

    factory = import_factory(target)
    dev = resolve_torch_device(device)
    try:
        model = factory(**dict(model_kwargs or {}))
    except TypeError as exc:
        hint = ""
        if "argument" in str(exc):
            hint = (
                " Give the factory's arguments as JSON with --model-kwargs, e.g. "
                "--model-kwargs '{\"n_features\": 50}'."
            )
        raise ModelError(
            f"calling {target}({_kwargs_text(model_kwargs)}) failed: {exc}.{hint}"
        ) from None
    if not callable(model):
        raise ModelError(f"{target} returned {type(model).__name__}, not a callable model.")
    sha = None
    if weights is not None:
        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"--weights needs {target} to build a torch.nn.Module.")
        load_state_dict(model, weights)
        sha = file_sha256(Path(weights))
    if isinstance(model, torch.nn.Module):
        model.eval()
        model.to(dev)
    call, method = _select_method(model)
    runner = TorchRunner(
        call,
        kind="factory",
        model=target,
        spec=_spec(layout, _wants_labels(call)),
        device=dev,
        input_dtype=_param_dtype(model),
        method=method,
        model_sha256=sha,
        spatial=spatial,
    )
    from latentdiag.job import kwargs_files

    runner.default_normalize = trained_range(model)
    source = _source_file(factory)
    runner.identity = {
        "factory_source_sha256": None if source is None else file_sha256(source),
        "model_kwargs": dict(model_kwargs or {}),
        "kwargs_files": kwargs_files(model_kwargs),
        "weights_sha256": sha,
    }
    return runner


def _source_file(obj: Any) -> Path | None:
    """The file that defines a factory (its module's source), when there is one."""
    import inspect

    try:
        name = inspect.getsourcefile(obj)
    except TypeError:
        return None
    return Path(name) if name and Path(name).is_file() else None


def first_layer(call: Any) -> tuple[str, int] | None:
    """The model's first Conv2d or Linear layer: ``("Conv2d", in_channels)`` or
    ``("Linear", in_features)``, read from its modules in registration order."""
    import torch

    module = call if isinstance(call, torch.nn.Module) else getattr(call, "__self__", None)
    if not isinstance(module, torch.nn.Module):
        return None
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            return "Conv2d", int(m.in_channels)
        if isinstance(m, torch.nn.Linear):
            return "Linear", int(m.in_features)
    return None


def expected_input_hint(call: Any, shape: tuple[int, ...]) -> str:
    """What the model takes, read from its first layer, and the flags that feed it that.

    Args:
        call: The model's encoder call (a module or its bound ``encode``).
        shape: The batch that failed, as latentdiag prepared it: (B, C, H, W) or (B, F).
    """
    layer = first_layer(call)
    generic = "give --size, --channels or --layout to feed it the input it expects."
    if layer is None:
        return generic
    kind, n = layer
    vectors = len(shape) == 2
    if kind == "Conv2d":
        if vectors:
            return (
                f"its first layer is Conv2d(in_channels={n}): it takes images (B, {n}, H, W), "
                "not the feature vectors this data holds."
            )
        return (
            f"its first layer is Conv2d(in_channels={n}): it takes (B, {n}, H, W) images; pass "
            f"--channels {n} (and --size S for the side it was trained on)."
        )
    if vectors:
        return (
            f"its first layer is Linear(in_features={n}): it takes {n:,} features per row; the "
            f"data has {shape[1]:,} (choose them with --feature-columns, or give other data)."
        )
    c = shape[1]
    for channels in dict.fromkeys((c, 1, 3)):
        side = math.isqrt(n // channels) if n % channels == 0 else 0
        if side and side * side * channels == n:
            return (
                f"its first layer is Linear(in_features={n}): it takes flattened images of {n:,} "
                f"values; pass --layout flat --channels {channels} --size {side}."
            )
    return (
        f"its first layer is Linear(in_features={n}): it takes {n:,} values per row, which no "
        "C×S×S image with C = 1 or 3 gives; it may be a model for vector data."
    )


def _kwargs_text(kwargs: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (kwargs or {}).items())


def _select_method(model: Any) -> tuple[Callable[..., Any], str]:
    """The encoder call of a VAE object: ``encode``, pythae's ``encoder``, else the model."""
    encode = getattr(model, "encode", None)
    if callable(encode):
        return encode, "encode"
    encoder = getattr(model, "encoder", None)
    if callable(encoder) and type(model).__module__.startswith("pythae."):
        return encoder, "encoder"
    return model, "forward"


def module_runner(
    module: Any,
    *,
    model: str,
    info: Mapping[str, Any] | None = None,
    device: str = "auto",
    layout: str | None = None,
    spatial: str = "flatten",
    model_sha256: str | None = None,
    kind: str = "module",
) -> TorchRunner:
    """A module already in memory, such as a reference run's encoder.

    Args:
        module: Called as ``module(x)`` or, when ``info["conditional"]``, ``module(x, labels)``
            (or its ``encode`` method when it has one).
        model: What it is, for provenance (e.g. the run directory).
        info: Optional facts about it: ``conditional``, ``channels``, ``size``,
            ``partitions`` ({name: [start, stop]}).
        device: Where to run it.
        layout: Input layout.
        spatial: ``flatten`` or ``mean`` for spatial latents.
        model_sha256: sha256 of the files it came from.
        kind: The model kind recorded in provenance.
    """
    import torch

    info = dict(info or {})
    dev = resolve_torch_device(device)
    if isinstance(module, torch.nn.Module):
        module.eval()
        module.to(dev)
    call, method = _select_method(module)
    conditional = info.get("conditional")
    if conditional is None:
        conditional = _wants_labels(call)
    size = info.get("size")
    parts = {str(k): (int(v[0]), int(v[1])) for k, v in (info.get("partitions") or {}).items()}
    runner = TorchRunner(
        call,
        kind=kind,
        model=model,
        spec=(
            # A module that declares vector input (a reference model trained on vectors).
            _spec("flat", bool(conditional), features=int(info["features"]))
            if info.get("features") is not None
            else _spec(
                layout,
                bool(conditional),
                channels=info.get("channels"),
                height=size,
                width=size,
            )
        ),
        device=dev,
        input_dtype=_param_dtype(module),
        method=method,
        model_sha256=model_sha256,
        partitions=parts,
        spatial=spatial,
    )
    if info.get("label_names") is not None:
        runner.label_names = [str(n) for n in info["label_names"]]
    runner.default_normalize = trained_range(module)
    return runner


def trained_range(model: Any) -> str | None:
    """The input range a library's model was trained on: diffusers' autoencoders take -1..1."""
    return "-1..1" if type(model).__module__.startswith("diffusers.") else None
