"""Running an ``.onnx`` encoder through onnxruntime.

Everything is read from the graph: the image input (name, rank, NCHW or NHWC, fixed or
dynamic batch, float32 / float16), an optional label input (integer labels, or a float one-hot
(B, K) input named like a label), and the outputs, picked by name or by convention (see
:mod:`latentdiag.runners.adapters`).

Loading is guarded: external-data paths that leave the model's folder, or are symbolic links,
are refused before onnxruntime opens anything, and a model whose IR or opset version the
installed onnxruntime cannot read fails with both versions named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.errors import ModelError
from latentdiag.runners.adapters import LOGVAR_KINDS, convert_to_logvar, name_role
from latentdiag.runners.base import InputSpec, LabelKind, Layout, Runner, reduce_spatial
from latentdiag.runners.device import onnx_providers

__all__ = ["OnnxRunner", "check_external_data"]

_FLOAT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
}
_INT_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32"}
_LABEL_NAMES = {
    "y", "c", "label", "labels", "cond", "condition", "conditioning", "class", "classes",
    "class_label", "class_labels", "onehot", "one_hot", "y_onehot", "c_onehot", "modality",
    "context", "domain",
}  # fmt: skip
_CHANNEL_COUNTS = (1, 3, 4)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph, subgraphs included (as onnx's own helper walks them)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def check_external_data(proto: Any, path: Path) -> list[Path]:
    """Refuse external-data references that leave the model's folder or go through links.

    Args:
        proto: The ModelProto, loaded without its external data.
        path: The ``.onnx`` file.

    Returns:
        The external data files, sorted (for the model's sha256).

    Raises:
        ModelError: A location is absolute, contains ``..``, resolves outside the folder of
            the ``.onnx`` file, is (or goes through) a symbolic link, or is missing.
    """
    from onnx import TensorProto

    folder = path.parent
    root = folder.resolve()
    files: set[Path] = set()
    for tensor in _tensors(proto.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        rel = Path(location)
        refuse = (
            f"{path} refers to external data {location!r} for tensor {tensor.name!r}, which "
            "{why}; latentdiag reads external data only from plain files inside the model's "
            "folder. Move the data file next to the model and re-save it."
        )
        if not location or rel.is_absolute() or os.path.isabs(location) or ".." in rel.parts:
            raise ModelError(refuse.format(why="is not a plain relative path"))
        full = folder / rel
        probe = folder
        for part in rel.parts:
            probe = probe / part
            if probe.is_symlink():
                raise ModelError(refuse.format(why="is a symbolic link"))
        resolved = full.resolve()
        if resolved != root and root not in resolved.parents:
            raise ModelError(refuse.format(why="lies outside the model's folder"))
        if not full.is_file():
            raise ModelError(
                f"{path} keeps tensor {tensor.name!r} in external data file {location!r}, "
                f"which does not exist in {folder}; copy it next to the model."
            )
        files.add(full)
    return sorted(files)


def _sha256(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _load_proto(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise ModelError(
            f"{path} is not a readable ONNX model ({' '.join(str(exc).split())[:160]}); "
            "expected a file written by onnx.save or torch.onnx.export."
        ) from None


PARTITIONS_KEY = "latentdiag.partitions"


def declared_partitions(proto: Any, path: Path) -> dict[str, tuple[int, int]]:
    """Latent partitions a model declares in its metadata (``latentdiag.partitions``).

    The value is a JSON object ``{"shared": [0, 8], "modality": [8, 16]}``; ``latentdiag
    export`` writes it, and anyone can add it to their own model with
    ``onnx.helper.set_model_props``.

    Raises:
        ModelError: The entry is there but is not such an object.
    """
    props = {p.key: p.value for p in proto.metadata_props}
    if PARTITIONS_KEY not in props:
        return {}
    try:
        raw = json.loads(props[PARTITIONS_KEY])
        return {str(k): (int(v[0]), int(v[1])) for k, v in raw.items() if len(v) == 2}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError, IndexError):
        raise ModelError(
            f"{path}: metadata {PARTITIONS_KEY!r} must be a JSON object of name: [start, stop]; "
            f"got {props[PARTITIONS_KEY][:120]!r}."
        ) from None


def declared_label_names(proto: Any) -> list[str] | None:
    """The labels a conditional model was trained on (``latentdiag.label_names``), if given."""
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        names = json.loads(props.get("latentdiag.label_names", "null"))
    except json.JSONDecodeError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _open_session(path: Path, proto: Any, providers: list[Any]) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: provider fallbacks are reported by us
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Pool threads spin between the ops of a run (disabling that costs ~3 % on small models)
    # but stop as soon as a run returns, leaving the cores to the threads and worker processes
    # that decode the next batch and write the last block.
    so.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / ...
        raise _load_error(path, proto, str(exc), ort.__version__) from None


def _load_error(path: Path, proto: Any, msg: str, ort_version: str) -> ModelError:
    m = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", msg)
    if m:
        return ModelError(
            f"{path} has ONNX IR version {m[1]}, but the installed onnxruntime {ort_version} "
            f"reads IR versions up to {m[2]}; re-save the model with ir_version = {m[2]} "
            "(or export it with an older onnx), or upgrade onnxruntime."
        )
    m = re.search(r"Opset (\d+) is under development.*?domain (\S+) is till opset (\d+)", msg, re.S)
    if m:
        return ModelError(
            f"{path} uses opset {m[1]} of domain {m[2]}, but the installed onnxruntime "
            f"{ort_version} supports that domain up to opset {m[3]}; re-export with "
            f"opset_version={m[3]} or lower, or upgrade onnxruntime."
        )
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import)
    text = " ".join(msg.split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : \S+ [^)]*\) ", "", text)
    return ModelError(
        f"onnxruntime {ort_version} cannot load {path} (IR version {proto.ir_version}, opsets "
        f"{opsets}): {text[:300]}"
    )


def _dim(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, np.integer)) and int(v) > 0 else None


def _label_like(name: str) -> bool:
    base = re.split(r"[/.:]", name.lower())[-1] if name else ""
    return base in _LABEL_NAMES or "label" in base or "onehot" in base or "one_hot" in base


def _input_spec(session: Any, layout: str | None, path: Path) -> InputSpec:
    inputs = list(session.get_inputs())

    def listing() -> str:
        return ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)

    image = None
    label = None
    label_kind: LabelKind | None = None
    rest = []
    floats = [i for i in inputs if i.type in _FLOAT_TYPES]
    ints = [i for i in inputs if i.type in _INT_TYPES]
    others = [i for i in inputs if i.type not in _FLOAT_TYPES and i.type not in _INT_TYPES]
    if others:
        raise ModelError(
            f"{path} has input {others[0].name!r} of type {others[0].type}; latentdiag feeds "
            f"float images and integer or one-hot labels. Inputs: {listing()}."
        )
    # The image: the float input of highest rank; ties go to the one not named like a label.
    ranked = sorted(
        floats,
        key=lambda i: (len(i.shape), not _label_like(i.name), _dim(i.shape[-1]) or 1 << 30),
        reverse=True,
    )
    if ranked:
        image = ranked[0]
        rest = ranked[1:]
    if image is None:
        raise ModelError(f"{path} has no float input to feed images to; inputs: {listing()}.")
    for i in ints:
        ok_rank = len(i.shape) == 1 or (len(i.shape) == 2 and _dim(i.shape[1]) in (None, 1))
        if label is None and ok_rank:
            label, label_kind = i, "index"
        else:
            rest.append(i)
    rest2 = []
    for i in rest:
        if (
            label is None
            and i.type in _FLOAT_TYPES
            and len(i.shape) == 2
            and _dim(i.shape[1])
            and (_label_like(i.name) or len(image.shape) >= 3)
        ):
            label, label_kind = i, "onehot"
        else:
            rest2.append(i)
    if rest2:
        raise ModelError(
            f"{path} has inputs latentdiag cannot feed ({', '.join(i.name for i in rest2)}); it "
            f"feeds one image input and at most one label input. Inputs: {listing()}."
        )
    shape = list(image.shape)
    rank = len(shape)
    dims = [_dim(v) for v in shape]
    common: dict[str, Any] = {
        "name": image.name,
        "batch": dims[0],
        "dtype": _FLOAT_TYPES[image.type],
    }
    if label is not None:
        common.update(
            label_name=label.name,
            label_kind=label_kind,
            label_dtype=_INT_TYPES.get(label.type) or _FLOAT_TYPES[label.type],
            label_rank=len(label.shape),
            num_classes=_dim(label.shape[1]) if label_kind == "onehot" else None,
        )
    if rank == 4:
        lay: Layout
        if layout is not None:
            lay = "NHWC" if layout.upper() == "NHWC" else "NCHW"
        elif dims[3] in _CHANNEL_COUNTS and dims[1] not in _CHANNEL_COUNTS:
            lay = "NHWC"
        else:
            lay = "NCHW"
        if lay == "NCHW":
            return InputSpec(layout=lay, channels=dims[1], height=dims[2], width=dims[3], **common)
        return InputSpec(layout=lay, channels=dims[3], height=dims[1], width=dims[2], **common)
    if rank == 3:
        return InputSpec(layout="NHW", channels=1, height=dims[1], width=dims[2], **common)
    if rank == 2:
        return InputSpec(layout="flat", features=dims[1], **common)
    raise ModelError(
        f"{path}: input {image.name!r} has rank {rank} ({shape}); latentdiag feeds images as "
        "rank 4 (B, C, H, W) or (B, H, W, C), rank 3 (B, H, W) or rank 2 (B, C·H·W)."
    )


class OnnxRunner(Runner):
    """An ``.onnx`` encoder run by onnxruntime.

    Args:
        path: The ``.onnx`` file.
        device: ``auto``, ``cpu`` or ``cuda``.
        providers: onnxruntime execution providers named explicitly (override ``device``).
        layout: ``NCHW`` or ``NHWC`` for a rank-4 image input, overriding the inference.
        mu_output: Name of the output holding the mean (else found by convention).
        logvar_output: Name of the output holding the log-variance (or a log-sigma / sigma /
            variance, per its name or ``logvar_kind``); ``"none"`` reads no log-variance.
        logvar_kind: ``logvar``, ``log_sigma``, ``sigma`` or ``variance``; default from the
            output's name, else ``logvar``.
        spatial: ``flatten`` or ``mean`` for outputs with spatial dimensions.

    Raises:
        ModelError: The file is missing or unreadable, its external data unsafe, its IR or
            opset version too new, its inputs unfeedable or an output name unknown.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        providers: Sequence[str] | None = None,
        layout: str | None = None,
        mu_output: str | None = None,
        logvar_output: str | None = None,
        logvar_kind: str | None = None,
        spatial: str = "flatten",
    ) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise ModelError(f"model file {p} does not exist.")
        proto = _load_proto(p)
        external = check_external_data(proto, p)
        wanted = onnx_providers(device, providers)
        session = _open_session(p, proto, wanted)
        ran = session.get_providers()[0]
        asked = wanted[0] if isinstance(wanted[0], str) else wanted[0][0]
        if ran != asked and (device == "cuda" or providers):
            raise ModelError(
                f"onnxruntime could not start {asked} (it fell back to {ran}); check the "
                f"provider's libraries, or use --device cpu."
            )
        spec = _input_spec(session, layout, p)
        names = [o.name for o in session.get_outputs()]
        mu_name, lv_name, lv_kind, how = _pick_outputs(names, mu_output, logvar_output, logvar_kind)
        outputs = {"mu": mu_name, "selected": how}
        if lv_name is not None:
            outputs["logvar"] = lv_name
            outputs["logvar_kind"] = lv_kind
        super().__init__(
            kind="onnx",
            model=str(p),
            spec=spec,
            device=f"onnxruntime {ran}",
            model_sha256=_sha256([p, *external]),
            partitions=declared_partitions(proto, p),
            outputs=outputs,
            spatial=spatial,
        )
        self.label_names = declared_label_names(proto)
        self.session = session
        self.ir_version = int(proto.ir_version)
        self.opsets = {o.domain or "ai.onnx": int(o.version) for o in proto.opset_import}
        self.onnxruntime_version = str(ort.__version__)
        self._fetch = [mu_name] + ([lv_name] if lv_name else [])
        self._logvar_kind = lv_kind
        self._np_dtype = np.dtype(spec.dtype)

    def _forward(
        self, images: np.ndarray, labels: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        spec = self.spec
        x = images  # (B, C, H, W)
        if spec.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        elif spec.layout == "NHW":
            x = x[:, 0]
        elif spec.layout == "flat":
            x = x.reshape(x.shape[0], -1)
        feeds = {spec.name: np.ascontiguousarray(x, dtype=self._np_dtype)}
        if spec.label_name is not None and labels is not None:
            feeds[spec.label_name] = self._label_feed(labels)
        try:
            outs = self.session.run(self._fetch, feeds)
        except Exception as exc:  # onnxruntime's own error types
            text = " ".join(str(exc).split())
            raise ModelError(
                f"onnxruntime failed on a batch of shape {tuple(x.shape)} for input "
                f"{spec.name!r} ({spec.shape_text()}): {text[:300]}"
            ) from None
        last = spec.layout == "NHWC"
        mu = reduce_spatial(np.asarray(outs[0], dtype=np.float32), self.spatial, channels_last=last)
        logvar = None
        if len(outs) > 1:
            lv = np.asarray(outs[1], dtype=np.float32)
            lv = reduce_spatial(lv, self.spatial, channels_last=last)
            logvar = np.asarray(convert_to_logvar(lv, self._logvar_kind), dtype=np.float32)
            if logvar.shape != mu.shape:
                raise ModelError(
                    f"output {self._fetch[1]!r} has shape {logvar.shape} but the mean "
                    f"{self._fetch[0]!r} has {mu.shape}; they must match."
                )
        return mu, logvar

    def _label_feed(self, labels: np.ndarray) -> np.ndarray:
        spec = self.spec
        if spec.label_kind == "onehot":
            k = int(spec.num_classes or 0)
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ModelError(
                    f"the model's one-hot label input {spec.label_name!r} takes {k} classes, "
                    f"but the data has label {int(labels.max())}; the data's labels must match "
                    "the classes the model was trained on."
                )
            return np.eye(k, dtype=np.dtype(spec.label_dtype))[labels]
        out = labels.astype(np.dtype(spec.label_dtype))
        return out.reshape(-1, 1) if spec.label_rank == 2 else out

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            onnx_ir_version=self.ir_version,
            onnx_opsets=self.opsets,
            onnxruntime_version=self.onnxruntime_version,
        )
        return info


def _pick_outputs(
    names: list[str],
    mu_output: str | None,
    logvar_output: str | None,
    logvar_kind: str | None,
) -> tuple[str, str | None, str, str]:
    """(mu name, logvar name or None, logvar kind, how they were chosen)."""

    def check(name: str, flag: str) -> None:
        if name not in names:
            raise ModelError(
                f"{flag} {name!r}: the model has no output of that name; its outputs are: "
                f"{', '.join(names)}."
            )

    if logvar_kind is not None and logvar_kind not in LOGVAR_KINDS:
        raise ModelError(
            f"--logvar-kind must be one of {', '.join(LOGVAR_KINDS)}; got {logvar_kind!r}."
        )
    roles = {n: name_role(n) for n in names}
    how = "by name"
    if mu_output is not None:
        check(mu_output, "--mu-output")
        mu = mu_output
    else:
        means = [n for n in names if roles[n] == "mu"]
        others = [n for n in names if n != logvar_output]
        if means:
            mu = means[0]
            how = "by convention"
        elif len(names) == 1:
            mu, how = names[0], "the only output"
        elif logvar_output is not None and len(others) == 1:
            mu, how = others[0], "the output besides --logvar-output"
        elif len(names) == 2 and not any(roles.values()) and logvar_output is None:
            mu, how = names[0], "by position (first: mu, second: logvar)"
            return mu, names[1], logvar_kind or "logvar", how
        else:
            raise ModelError(
                f"cannot tell which output holds the mean among {', '.join(names)}; name it "
                "with --mu-output (and the log-variance with --logvar-output)."
            )
    if logvar_output is not None and logvar_output.lower() == "none":
        return mu, None, "logvar", how
    if logvar_output is not None:
        check(logvar_output, "--logvar-output")
        role = roles[logvar_output]
        kind = logvar_kind or (role if role in LOGVAR_KINDS else "logvar")
        return mu, logvar_output, kind, how
    for kind in LOGVAR_KINDS:
        found = [n for n in names if roles[n] == kind and n != mu]
        if found:
            return mu, found[0], logvar_kind or kind, how
    return mu, None, "logvar", how
