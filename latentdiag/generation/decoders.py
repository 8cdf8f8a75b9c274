"""Conditional decoders behind one interface: ``decode(z, labels)`` on numpy arrays.

A :class:`Decoder` turns latents z (B, d) and integer labels (B,) into samples: images
(B, C, H, W) in [0, 1] or vectors (B, F) in the data's units. :func:`open_decoder` opens the
kinds a user has:

* an ONNX decoder (:class:`OnnxDecoder`) that follows the convention documented in
  docs/metrics.md § Conditional generation: one float latent input (B, d), one label input —
  int64 (B,) or a one-hot float (B, K) — found by name or named with ``latent_input`` /
  ``label_input``, and one output (B, C, H, W), (B, H, W, C), (B, H, W) or (B, F), in [0, 1]
  or logits (``output="logits"``);
* ``pkg.module:factory``, whose result has a method ``decode(z, y)`` (torch tensors in and
  out for a torch module, numpy arrays otherwise);
* any Python callable (:class:`CallableDecoder`).

Reference run directories are opened by ``reference_models.generation`` (the core imports
nothing of the reference models), which returns a :class:`CallableDecoder`.

Latents are drawn from the decoder's prior: N(0, I) unless the decoder brings its own (the
disentangled reference model's conditional prior).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.errors import ModelError

__all__ = [
    "OUTPUT_KINDS",
    "CallableDecoder",
    "Decoder",
    "OnnxDecoder",
    "as_samples",
    "open_decoder",
]

#: What a decoder's raw output holds: probabilities / values, or logits of Bernoulli pixels.
OUTPUT_KINDS = ("probs", "logits")

Prior = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass
class Decoder:
    """A conditional decoder: z (B, d) and labels (B,) -> samples.

    Attributes:
        latent_dim: d.
        n_labels: How many labels it is conditioned on (K), or None when only the data can
            say (an ONNX int64 label input without declared label names).
        label_names: The names of its labels 0..K-1, when it knows them.
        description: One line for the report and provenance (what was opened, where it runs).
        output: ``probs`` (outputs used as they are) or ``logits`` (a sigmoid is applied).
    """

    latent_dim: int
    n_labels: int | None = None
    label_names: list[str] | None = None
    description: str = ""
    output: str = "probs"
    prior: Prior | None = field(default=None, repr=False)
    #: The image size and channels the decoder generates, where it says (reference runs).
    image_size: int | None = None
    image_channels: int | None = None

    def sample_latents(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One z per label from the prior: N(0, I), or the decoder's own (conditional) prior."""
        if self.prior is not None:
            return np.asarray(self.prior(np.asarray(labels, np.int64), rng), dtype=np.float32)
        return rng.standard_normal((len(labels), self.latent_dim)).astype(np.float32)

    def decode(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Samples for z (B, d) float32 and labels (B,) int64 (indices into the decoder's)."""
        raise NotImplementedError

    def fit_data(self, x: np.ndarray) -> None:
        """See the real data once before decoding (a counts decoder takes its library size)."""

    def close(self) -> None:
        """Release what the decoder holds (sessions, GPU memory)."""


class CallableDecoder(Decoder):
    """A Python callable ``fn(z, labels) -> samples`` (numpy in, numpy or torch out).

    Args:
        fn: The decode function.
        latent_dim: d.
        n_labels: K, when known.
        label_names: Names of labels 0..K-1, when known.
        description: One line naming it.
        output: ``probs`` or ``logits``.
        prior: ``prior(labels, rng) -> z`` (B, d); default N(0, I).
        fit: Called with the real data by :meth:`fit_data`.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray, np.ndarray], Any],
        *,
        latent_dim: int,
        n_labels: int | None = None,
        label_names: list[str] | None = None,
        description: str = "a Python decoder",
        output: str = "probs",
        prior: Prior | None = None,
        fit: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        _check_output_kind(output)
        self._fit = fit
        super().__init__(
            latent_dim=int(latent_dim),
            n_labels=n_labels if n_labels is None else int(n_labels),
            label_names=label_names,
            description=description,
            output=output,
            prior=prior,
        )
        self._fn = fn

    def decode(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return _to_numpy(self._fn(z, labels))

    def fit_data(self, x: np.ndarray) -> None:
        if self._fit is not None:
            self._fit(x)


class OnnxDecoder(Decoder):
    """An ONNX decoder run by onnxruntime (see the module docstring for its convention).

    Args:
        path: The ``.onnx`` file.
        latent_input: Name of the latent input (else: the float input named like z / latent).
        label_input: Name of the label input (else: the other input).
        output: ``probs`` or ``logits``.
        device: ``auto``, ``cpu`` or ``cuda``.
        providers: onnxruntime execution providers named explicitly.

    Raises:
        ModelError: The file is missing or unreadable, or its inputs do not follow the
            convention.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        latent_input: str | None = None,
        label_input: str | None = None,
        output: str = "probs",
        device: str = "auto",
        providers: list[str] | None = None,
    ) -> None:
        from latentdiag.runners.device import onnx_providers
        from latentdiag.runners.onnx import _load_proto, _open_session, declared_label_names

        _check_output_kind(output)
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"decoder file {p} does not exist.")
        proto = _load_proto(p)
        session = _open_session(p, proto, onnx_providers(device, providers))
        self._session = session
        self.provider = str(session.get_providers()[0])
        inputs = {i.name: i for i in session.get_inputs()}
        z_in, y_in = _pick_inputs(p, inputs, latent_input, label_input)
        z_shape = inputs[z_in].shape
        if len(z_shape) != 2 or not isinstance(z_shape[1], int):
            raise ModelError(
                f"{p}: the latent input {z_in!r} must be (batch, d) with d fixed; it is "
                f"{_shape_text(z_shape)}."
            )
        y_shape = inputs[y_in].shape
        self._z_name, self._y_name = z_in, y_in
        self._one_hot = len(y_shape) == 2
        if len(y_shape) not in (1, 2) or (self._one_hot and not isinstance(y_shape[1], int)):
            raise ModelError(
                f"{p}: the label input {y_in!r} must be int64 (batch,) or a one-hot float "
                f"(batch, K) with K fixed; it is {_shape_text(y_shape)}."
            )
        # An index input declared as float is fed the indices as floats.
        self._y_dtype = np.float32 if "float" in inputs[y_in].type else np.int64
        names = declared_label_names(proto)
        k = int(y_shape[1]) if self._one_hot else (len(names) if names else None)
        if names is not None and k is not None and len(names) != k:
            names = None
        outputs = session.get_outputs()
        if len(outputs) != 1:
            raise ModelError(
                f"{p} has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}); a "
                "decoder has one: the samples."
            )
        super().__init__(
            latent_dim=int(z_shape[1]),
            n_labels=k,
            label_names=names,
            description=f"ONNX decoder {p.name} (onnxruntime, {self.provider})",
            output=output,
        )

    def decode(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        y = np.asarray(labels, np.int64)
        if self._one_hot:
            assert self.n_labels is not None
            feed_y = np.eye(self.n_labels, dtype=np.float32)[y]
        else:
            feed_y = y.astype(self._y_dtype)
        try:
            (out,) = self._session.run(
                None, {self._z_name: np.asarray(z, np.float32), self._y_name: feed_y}
            )
        except Exception as exc:  # onnxruntime's own error types
            text = " ".join(str(exc).split())[:240]
            raise ModelError(f"the ONNX decoder failed on a batch of {len(y)}: {text}") from None
        return np.asarray(out)

    def close(self) -> None:
        self._session = None


def _check_output_kind(output: str) -> None:
    if output not in OUTPUT_KINDS:
        raise ModelError(f"--output must be probs or logits; got {output!r}.")


def _shape_text(shape: Any) -> str:
    return "(" + ", ".join(str(s) if isinstance(s, int) else "?" for s in shape) + ")"


_LATENT_NAME = re.compile(r"(^|[^a-z])(z|latents?|codes?|mu|noise)([^a-z]|$)", re.I)
_LABEL_NAME = re.compile(r"label|class|cond|(^|[^a-z])(y|c)([^a-z]|$)|onehot|one_hot", re.I)


def _pick_inputs(
    path: Path, inputs: Mapping[str, Any], latent_input: str | None, label_input: str | None
) -> tuple[str, str]:
    """The latent and label inputs: named, found by name, or the float 2-D one and the other."""
    listed = ", ".join(f"{n} {_shape_text(i.shape)} {i.type}" for n, i in inputs.items())
    for flag, name in (("--latent-input", latent_input), ("--label-input", label_input)):
        if name is not None and name not in inputs:
            raise ModelError(f"{path} has no input {name!r} ({flag}); its inputs: {listed}.")
    if len(inputs) != 2:
        raise ModelError(
            f"{path} has {len(inputs)} input(s) ({listed}); a conditional decoder takes two: "
            "the latents (batch, d) and the labels (batch,) or (batch, K)."
        )
    names = list(inputs)
    if latent_input and label_input:
        return latent_input, label_input
    if latent_input or label_input:
        given = latent_input or label_input
        other = next(n for n in names if n != given)
        return (given, other) if latent_input else (other, given)  # type: ignore[return-value]
    by_name = [n for n in names if _LATENT_NAME.search(n) and not _LABEL_NAME.search(n)]
    if len(by_name) == 1:
        return by_name[0], next(n for n in names if n != by_name[0])
    by_label = [n for n in names if _LABEL_NAME.search(n) and not _LATENT_NAME.search(n)]
    if len(by_label) == 1:
        return next(n for n in names if n != by_label[0]), by_label[0]
    ints = [n for n in names if "int" in inputs[n].type]
    if len(ints) == 1:
        return next(n for n in names if n != ints[0]), ints[0]
    raise ModelError(
        f"cannot tell which input of {path} is the latent and which the label ({listed}); "
        "name them with --latent-input and --label-input."
    )


def _to_numpy(out: Any) -> np.ndarray:
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy()
    return np.asarray(out)


def _factory_decoder(
    target: str,
    *,
    model_kwargs: Mapping[str, Any] | None,
    weights: str | os.PathLike[str] | None,
    device: str,
    latent_dim: int | None,
    output: str,
) -> Decoder:
    """``pkg.module:factory``: its result's ``decode(z, y)`` (torch or numpy)."""
    from latentdiag.runners.loading import import_factory, load_state_dict

    factory = import_factory(target)
    try:
        obj = factory(**dict(model_kwargs or {}))
    except Exception as exc:
        raise ModelError(f"{target}(...) raised {type(exc).__name__}: {exc}") from None
    decode = getattr(obj, "decode", None)
    if not callable(decode):
        raise ModelError(
            f"{target} built a {type(obj).__name__} without a decode method; a decoder for "
            "gencheck has decode(z, y): z (B, d), y int64 (B,) -> samples."
        )
    d = latent_dim or getattr(obj, "latent_dim", None)
    if not d:
        raise ModelError(
            f"{target}: the latent size is unknown; give --latent-dim, or a latent_dim "
            "attribute on the model."
        )
    k = getattr(obj, "n_labels", None) or getattr(obj, "num_classes", None)
    names = getattr(obj, "label_names", None)
    is_torch = hasattr(obj, "parameters") and hasattr(obj, "eval")
    where = "numpy"
    if is_torch:
        import torch

        from latentdiag.runners.device import resolve_torch_device

        if weights is not None:
            load_state_dict(obj, weights)
        dev = torch.device(resolve_torch_device(device))
        obj.to(dev).eval()
        where = f"torch {dev}"

        def fn(z: np.ndarray, y: np.ndarray) -> Any:
            with torch.no_grad():
                return decode(
                    torch.as_tensor(z, device=dev), torch.as_tensor(y, dtype=torch.long, device=dev)
                )

    elif weights is not None:
        raise ModelError(f"--weights needs a torch module; {target} built a {type(obj).__name__}.")
    else:
        fn = decode
    return CallableDecoder(
        fn,
        latent_dim=int(d),
        n_labels=int(k) if k else None,
        label_names=[str(n) for n in names] if names else None,
        description=f"{target} ({where})",
        output=output,
    )


def open_decoder(
    model: str | os.PathLike[str],
    *,
    latent_input: str | None = None,
    label_input: str | None = None,
    output: str = "probs",
    device: str = "auto",
    providers: list[str] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    weights: str | os.PathLike[str] | None = None,
    latent_dim: int | None = None,
) -> Decoder:
    """Open an ONNX decoder or a ``pkg.module:factory`` (reference runs: the command line).

    Raises:
        ModelError: MODEL is neither, missing, or does not follow the decoder convention.
    """
    text = os.fspath(model)
    _check_output_kind(output)
    if text.endswith(".onnx"):
        if model_kwargs or weights or latent_dim:
            raise ModelError(
                "--model-kwargs, --weights and --latent-dim apply to pkg.module:factory "
                "decoders; an ONNX decoder declares its own inputs."
            )
        return OnnxDecoder(
            text,
            latent_input=latent_input,
            label_input=label_input,
            output=output,
            device=device,
            providers=providers,
        )
    if latent_input or label_input:
        raise ModelError("--latent-input and --label-input apply to ONNX decoders only.")
    if ":" in text and not Path(text).exists():
        return _factory_decoder(
            text,
            model_kwargs=model_kwargs,
            weights=weights,
            device=device,
            latent_dim=latent_dim,
            output=output,
        )
    if not Path(text).exists():
        raise ModelError(f"decoder {text} does not exist.")
    raise ModelError(
        f"{text} is not a decoder gencheck can open; MODEL is a reference run directory, an "
        ".onnx decoder, or pkg.module:factory whose model has decode(z, y)."
    )


def as_samples(raw: np.ndarray, item_shape: tuple[int, ...], output: str) -> np.ndarray:
    """A decoder's raw output as float32 samples shaped like the data's items.

    Images: (B, C, H, W); (B, H, W, C) and (B, H, W) (one channel) are transposed or expanded,
    a flat (B, C·H·W) reshaped; logits go through a sigmoid, and probabilities must lie in
    [0, 1]. Vectors: (B, F).

    Raises:
        ModelError: The output's shape fits no layout of the data's items, it holds NaN or
            inf, or probabilities lie outside [0, 1].
    """
    arr = np.asarray(raw)
    if arr.dtype.kind not in "fiub":
        raise ModelError(f"the decoder returned {arr.dtype} values; expected floats.")
    arr = arr.astype(np.float32, copy=False)
    b = arr.shape[0] if arr.ndim else 0
    want = tuple(int(s) for s in item_shape)
    got = arr.shape[1:]
    if got != want:
        if len(want) == 3 and got == (want[1], want[2], want[0]):
            arr = arr.transpose(0, 3, 1, 2)
        elif len(want) == 3 and want[0] == 1 and got == want[1:]:
            arr = arr[:, None]
        elif arr.ndim == 2 and got[0] == int(np.prod(want)):
            arr = arr.reshape((b, *want))
        else:
            kind = "images (C, H, W)" if len(want) == 3 else "vectors (F,)"
            raise ModelError(
                f"the decoder's output is {tuple(arr.shape)}: {got} per sample, but the data's "
                f"items are {kind} {want}; the decoder must generate samples shaped like DATA."
            )
    if not np.isfinite(arr).all():
        raise ModelError("the decoder's output holds NaN or inf values.")
    if output == "logits":
        arr = (1.0 / (1.0 + np.exp(-arr))).astype(np.float32)
    elif len(want) == 3:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ModelError(
                f"the decoder's images lie in [{lo:.3g}, {hi:.3g}], outside [0, 1]; if they "
                "are logits, pass --output logits; otherwise scale them to [0, 1]."
            )
        arr = np.clip(arr, 0.0, 1.0)
    return np.ascontiguousarray(arr)
