"""The judge: a classifier of the real data that says which label a generated sample shows.

A conditional generator asked for label k should produce samples a classifier of the real
data calls k; the same classifier's penultimate layer is the feature space of the Fréchet
distance and of precision / recall. Three judges share one interface (:class:`Judge`):

* :func:`train_judge` trains one on real labelled data, keeping a stratified held-out part to
  measure it (:class:`TrainedJudge`, ``heldout_accuracy``);
* :func:`train_classifier` trains the same network on all it is given, without a held-out
  part — the Classification Accuracy Score trains it on generated samples and tests it on
  real held-out data;
* :class:`OnnxJudge` runs a user's own ONNX classifier.

The networks (:func:`train_judge`'s ``kind``):

* ``cnn`` for images (N, C, H, W) in [0, 1], any C and H, W >= 8: conv 3×3 C→32 stride 2,
  conv 3×3 32→64 stride 2 (ReLU after each), adaptive average pooling to 4×4, a linear layer
  1024→128 with ReLU — the 128-d features — and a linear head 128→K;
* ``mlp`` for vectors (N, F) in the data's units (or images, flattened): the features are
  standardised with the training part's mean and standard deviation (kept with the judge),
  then F→256→128 with ReLU after each — the 128-d features — and a linear head 128→K.

Both train with Adam (learning rate 3e-3) on the cross-entropy, batches of 128, reshuffled
each epoch by a generator seeded from ``seed``; the initial weights come from the same seed,
drawn without disturbing the caller's torch random state. On the CPU two runs with the same
seed give bit-identical judges (unless ``max_seconds`` cuts one short).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from latentdiag.errors import MetricInputError, ModelError

__all__ = [
    "FEATURE_DIM",
    "KINDS",
    "Judge",
    "OnnxJudge",
    "TrainedJudge",
    "default_epochs",
    "train_classifier",
    "train_judge",
]

#: Width of the trained judges' feature layer.
FEATURE_DIM = 128
#: The networks :func:`train_judge` can train (``auto``: ``cnn`` for images, ``mlp`` for vectors).
KINDS = ("auto", "cnn", "mlp")

_BATCH = 128  # training batch
_EVAL_BATCH = 1024  # rows per forward pass when predicting
_LR = 3e-3  # with 40,000 rows seen: 0.988-0.990 held out on the synthetic modalities
_SAMPLE_BUDGET = 40_000  # rows seen in training (~310 updates), unless an epoch cap binds
_MIN_EPOCHS = 2
_MAX_EPOCHS = 60
_MIN_SIDE = 8

Progress = Callable[[float], None]


@runtime_checkable
class Judge(Protocol):
    """A classifier of samples: label probabilities, a label, and a feature vector per row.

    ``x`` is laid out like the data the judge was made for: images (N, C, H, W) float32 in
    [0, 1], or vectors (N, F) in the data's units.
    """

    @property
    def n_labels(self) -> int:
        """K: labels 0..K-1."""
        ...

    @property
    def kind(self) -> str:
        """``cnn``, ``mlp`` or ``onnx``."""
        ...

    @property
    def heldout_accuracy(self) -> float | None:
        """Accuracy on real held-out data, when the judge measured it itself."""
        ...

    def predict_proba(self, x: Any) -> np.ndarray:
        """(N, K) float64 probabilities, rows summing to 1."""
        ...

    def predict(self, x: Any) -> np.ndarray:
        """(N,) int64 labels: the most probable."""
        ...

    def features(self, x: Any) -> np.ndarray:
        """(N, D) float64 activations of the layer before the logits."""
        ...


# -- the networks ------------------------------------------------------------------------------
class _ConvNet(nn.Module):
    def __init__(self, channels: int, n_labels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            # 16 and 32 channels: as accurate as 32 and 64 on the synthetic modalities (0.99
            # held out, trained on 1,600 images) at half the training time on 2 cores.
            nn.Conv2d(channels, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            # A fixed 4×4 grid keeps where things are (a global pool would not) for any H, W.
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 16, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(x)  # (B, 128)
        return self.head(feats), feats  # (B, K), (B, 128)


class _MLP(nn.Module):
    mean: torch.Tensor  # (F,) the training part's, a buffer
    std: torch.Tensor  # (F,)

    def __init__(self, n_features: int, n_labels: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.body = nn.Sequential(
            nn.Linear(n_features, 256),
            nn.ReLU(),
            nn.Linear(256, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)  # (B, F)
        feats = self.body((x - self.mean) / self.std)  # (B, 128)
        return self.head(feats), feats  # (B, K), (B, 128)


# -- the trained judge -------------------------------------------------------------------------
@dataclass(eq=False)
class TrainedJudge:
    """A judge trained by latentdiag (:func:`train_judge`, :func:`train_classifier`).

    Attributes:
        n_labels: K.
        kind: ``cnn`` or ``mlp``.
        input_shape: The shape of one item, e.g. (1, 32, 32) or (50,).
        heldout_accuracy: Accuracy on the held-out part; None when trained without one
            (:func:`train_classifier`).
        train_index: Rows of ``x`` trained on (sorted).
        heldout_index: Rows of ``x`` held out (sorted; empty without a held-out part).
        epochs: Epochs begun.
        updates: Optimiser steps taken.
        seconds: Time spent in the training loop.
        stopped_by_time: Whether ``max_seconds`` ended training before all its epochs ran.
        device: The torch device it runs on.
        network: The torch module, in eval mode; ``network(x)`` returns (logits, features).
    """

    n_labels: int
    kind: str
    input_shape: tuple[int, ...]
    heldout_accuracy: float | None
    train_index: np.ndarray
    heldout_index: np.ndarray
    epochs: int
    updates: int
    seconds: float
    stopped_by_time: bool
    device: str
    network: nn.Module = field(repr=False)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Label probabilities (N, K) float64 (a softmax of the logits).

        Raises:
            MetricInputError: ``x`` is not laid out like the training data.
        """
        return _softmax(self._run(x, features=False))

    def predict(self, x: Any) -> np.ndarray:
        """The most probable label of each row, (N,) int64.

        Raises:
            MetricInputError: ``x`` is not laid out like the training data.
        """
        return np.argmax(self._run(x, features=False), axis=1).astype(np.int64)

    def features(self, x: Any) -> np.ndarray:
        """The 128-d penultimate activations (N, 128) float64.

        Raises:
            MetricInputError: ``x`` is not laid out like the training data.
        """
        return self._run(x, features=True)

    def _run(self, x: Any, *, features: bool) -> np.ndarray:
        arr = _check_items(x, self.input_shape)
        width = FEATURE_DIM if features else self.n_labels
        return _forward(self.network, arr, self.device, features=features, width=width)


# -- training ----------------------------------------------------------------------------------
def default_epochs(n_train: int) -> int:
    """Epochs for ``n_train`` rows: enough to see about 40,000 rows (~310 updates of 128).

    Never fewer than 2 epochs (big data sees more) nor more than 60 (small data sees fewer).
    Examples: 400 rows → 60 epochs (240 updates), 3,200 → 13 (325), 50,000 → 2 (782),
    200,000 → 2 (3,126).
    """
    by_samples = math.ceil(_SAMPLE_BUDGET / max(1, n_train))
    return int(min(_MAX_EPOCHS, max(_MIN_EPOCHS, by_samples)))


def train_judge(
    x: Any,
    labels: Any,
    *,
    n_labels: int | None = None,
    kind: str = "auto",
    heldout: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
    max_seconds: float | None = None,
    progress: Progress | None = None,
) -> TrainedJudge:
    """Train a judge on real labelled data and measure it on a stratified held-out part.

    Args:
        x: Images (N, C, H, W) float32 in [0, 1] with H, W >= 8, or vectors (N, F) float32 in
            the data's units.
        labels: (N,) integer labels in 0..K-1.
        n_labels: K; default the largest label + 1.
        kind: ``auto`` (``cnn`` for images, ``mlp`` for vectors), ``cnn`` or ``mlp``.
        heldout: Fraction of the rows held out, stratified by label (fixed by ``seed``).
        seed: Seeds the split, the initial weights and the shuffling.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        epochs: Passes over the training part; default :func:`default_epochs`.
        max_seconds: Stop training after this long (the epoch in progress is cut short).
        progress: Called with the fraction of training done, from 0 to 1.

    Returns:
        The judge, with its held-out accuracy and the rows it trained on and held out.

    Raises:
        MetricInputError: ``x`` or ``labels`` have the wrong shape, values or type, a label
            has fewer than 2 rows, or the held-out part cannot hold every label.
        ModelError: ``kind`` or ``device`` is unknown, or the device is not available.
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    arr, y, k, net_kind = _check_training_data(x, labels, n_labels=n_labels, kind=kind)
    if not 0.0 < float(heldout) < 1.0:
        raise MetricInputError(f"heldout must be a fraction between 0 and 1; got {heldout!r}.")
    n = arr.shape[0]
    present, counts = np.unique(y, return_counts=True)
    if int(counts.min()) < 2:
        thin = present[counts < 2].tolist()
        raise MetricInputError(
            f"a stratified held-out split needs at least 2 rows per label; label(s) "
            f"{', '.join(map(str, thin[:5]))} have 1."
        )
    n_test = math.ceil(float(heldout) * n)
    if n_test < len(present) or n - n_test < len(present):
        raise MetricInputError(
            f"holding out {heldout:g} of {n:,} rows leaves {n_test:,} held out and "
            f"{n - n_test:,} to train on; each must hold all {len(present)} labels present. "
            "Give more rows or change heldout."
        )
    split = StratifiedShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
    train_idx, test_idx = next(split.split(np.zeros((n, 1)), y))
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    judge = _fit(
        arr[train_idx],
        y[train_idx],
        n_labels=k,
        kind=net_kind,
        seed=seed,
        device=device,
        epochs=epochs,
        max_seconds=max_seconds,
        progress=progress,
    )
    judge.train_index = train_idx.astype(np.int64)
    judge.heldout_index = test_idx.astype(np.int64)
    judge.heldout_accuracy = float(np.mean(judge.predict(arr[test_idx]) == y[test_idx]))
    return judge


def train_classifier(
    x: Any,
    labels: Any,
    *,
    n_labels: int,
    kind: str = "auto",
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
) -> TrainedJudge:
    """Train the judge's network on every row given, without a held-out part.

    For the Classification Accuracy Score: trained on generated samples, then tested by the
    caller on real held-out data. Labels absent from ``labels`` are allowed (a generator may
    miss some); the network still has K outputs.

    Args:
        x: Images (N, C, H, W) float32 in [0, 1] with H, W >= 8, or vectors (N, F) float32.
        labels: (N,) integer labels in 0..K-1.
        n_labels: K.
        kind: ``auto``, ``cnn`` or ``mlp`` (see :func:`train_judge`).
        seed: Seeds the initial weights and the shuffling.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        epochs: Passes over the data; default :func:`default_epochs`.

    Returns:
        The classifier (``heldout_accuracy`` None, ``heldout_index`` empty).

    Raises:
        MetricInputError: ``x`` or ``labels`` have the wrong shape, values or type.
        ModelError: ``kind`` or ``device`` is unknown, or the device is not available.
    """
    arr, y, k, net_kind = _check_training_data(x, labels, n_labels=n_labels, kind=kind)
    return _fit(arr, y, n_labels=k, kind=net_kind, seed=seed, device=device, epochs=epochs)


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_labels: int,
    kind: str,
    seed: int,
    device: str,
    epochs: int | None,
    max_seconds: float | None = None,
    progress: Progress | None = None,
) -> TrainedJudge:
    """The one training loop: data, network, optimiser, epochs of shuffled batches."""
    from latentdiag.runners.device import resolve_torch_device

    if epochs is not None and int(epochs) < 1:
        raise MetricInputError(f"epochs must be at least 1; got {epochs!r}.")
    if max_seconds is not None and not float(max_seconds) > 0:
        raise MetricInputError(f"max_seconds must be positive; got {max_seconds!r}.")
    dev = resolve_torch_device(device)
    start = time.perf_counter()
    n = x.shape[0]
    n_epochs = int(epochs) if epochs is not None else default_epochs(n)
    steps = math.ceil(n / _BATCH)
    total = n_epochs * steps

    # Seed the weights without touching the caller's random state; they are drawn on the CPU
    # so a seed gives the same start on every device.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _build(kind, x, n_labels)
    network.to(dev).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=_LR)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(x)  # (N, ...) float32, on the CPU
    targets = torch.from_numpy(y)  # (N,) int64
    report_every = max(1, total // 100)

    updates = 0
    epoch = 0
    out_of_time = False
    if progress is not None:
        progress(0.0)
    while epoch < n_epochs and not out_of_time:
        epoch += 1
        order = torch.randperm(n, generator=shuffle)
        for b in range(steps):
            idx = order[b * _BATCH : (b + 1) * _BATCH]
            xb = data[idx].to(dev, non_blocking=True)  # (B, ...)
            yb = targets[idx].to(dev, non_blocking=True)  # (B,)
            logits, _ = network(xb)  # (B, K)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updates += 1
            elapsed = time.perf_counter() - start
            if progress is not None and updates % report_every == 0:
                done = updates / total
                if max_seconds is not None:
                    done = max(done, elapsed / float(max_seconds))
                progress(min(1.0, done))
            if max_seconds is not None and elapsed >= float(max_seconds):
                out_of_time = updates < total
                break
    network.eval()
    if progress is not None:
        progress(1.0)
    return TrainedJudge(
        n_labels=n_labels,
        kind=kind,
        input_shape=tuple(int(s) for s in x.shape[1:]),
        heldout_accuracy=None,
        train_index=np.arange(n, dtype=np.int64),
        heldout_index=np.zeros(0, dtype=np.int64),
        epochs=epoch,
        updates=updates,
        seconds=time.perf_counter() - start,
        stopped_by_time=out_of_time,
        device=dev,
        network=network,
    )


def _build(kind: str, x: np.ndarray, n_labels: int) -> nn.Module:
    if kind == "cnn":
        return _ConvNet(int(x.shape[1]), n_labels)
    flat = x.reshape(x.shape[0], -1)  # (N, F)
    mean = flat.mean(axis=0, dtype=np.float64)
    std = flat.std(axis=0, dtype=np.float64)
    std[std < 1e-8] = 1.0  # a constant feature stays 0 after centring
    return _MLP(flat.shape[1], n_labels, mean.astype(np.float32), std.astype(np.float32))


def _forward(
    network: nn.Module, x: np.ndarray, device: str, *, features: bool, width: int
) -> np.ndarray:
    """Logits or features of every row, in batches, in eval mode, without gradients."""
    out = []
    network.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], _EVAL_BATCH):
            xb = torch.from_numpy(x[start : start + _EVAL_BATCH]).to(device)
            logits, feats = network(xb)
            out.append((feats if features else logits).double().cpu().numpy())
    if not out:
        return np.zeros((0, width), dtype=np.float64)
    return np.concatenate(out, axis=0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True) if logits.size else logits
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


# -- input checks ------------------------------------------------------------------------------
def _layout_text(shape: Sequence[int | None]) -> str:
    return "(N, " + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def _as_float_array(x: Any, name: str = "x") -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"{name} must be a numeric array; it could not be read ({exc})."
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise MetricInputError(f"{name} must hold numbers; found dtype {arr.dtype}.")
    return arr


def _check_finite(arr: np.ndarray, name: str = "x") -> None:
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)))
        raise MetricInputError(
            f"{name} has NaN or inf in {bad:,} of {arr.shape[0]:,} rows; expected finite values."
        )


def _check_items(x: Any, item_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as C-contiguous float32 (N, *item_shape), or a MetricInputError."""
    arr = _as_float_array(x)
    if arr.ndim != 1 + len(item_shape) or tuple(arr.shape[1:]) != item_shape:
        what = "images" if len(item_shape) == 3 else "vectors"
        raise MetricInputError(
            f"the judge takes {what} {_layout_text(item_shape)}, laid out like its training "
            f"data; found shape {tuple(arr.shape)}."
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    _check_finite(arr)
    return arr


def _check_training_data(
    x: Any, labels: Any, *, n_labels: int | None, kind: str
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(x float32, labels int64, K, network kind) after checking them against each other."""
    if kind not in KINDS:
        raise ModelError(f"the judge's kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    arr = _as_float_array(x)
    if arr.ndim not in (2, 4):
        raise MetricInputError(
            f"x must be images (N, C, H, W) or vectors (N, F); found shape {tuple(arr.shape)}."
        )
    net_kind = kind if kind != "auto" else ("cnn" if arr.ndim == 4 else "mlp")
    if net_kind == "cnn" and arr.ndim != 4:
        raise MetricInputError(
            f"the cnn judge takes images (N, C, H, W); found shape {tuple(arr.shape)}. Use "
            "kind='mlp' for vectors."
        )
    if arr.ndim == 4 and min(arr.shape[2:]) < _MIN_SIDE:
        raise MetricInputError(
            f"the judge takes images of at least {_MIN_SIDE}×{_MIN_SIDE} pixels (N, C, H, W); "
            f"found shape {tuple(arr.shape)}."
        )
    if arr.shape[0] < 2 or min(arr.shape[1:]) < 1:
        raise MetricInputError(f"x needs at least 2 non-empty rows; found shape {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    _check_finite(arr)

    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != arr.shape[0]:
        raise MetricInputError(
            f"labels must be 1-D with one label per row of x ({arr.shape[0]:,}); found shape "
            f"{tuple(lab.shape)}."
        )
    if lab.dtype.kind not in "iu":
        raise MetricInputError(
            f"labels must be integers 0..K-1; found dtype {lab.dtype}. Recode them first."
        )
    y = lab.astype(np.int64)
    lowest, highest = int(y.min()), int(y.max())
    k = int(n_labels) if n_labels is not None else highest + 1
    if k < 2:
        raise MetricInputError(
            f"a judge needs at least 2 labels; found n_labels = {k} (labels 0..{highest})."
        )
    if lowest < 0 or highest >= k:
        raise MetricInputError(
            f"labels must lie in 0..{k - 1} (n_labels = {k}); found {lowest}..{highest}."
        )
    return arr, y, k, net_kind


# -- a user's ONNX classifier ------------------------------------------------------------------
_LOGIT_WORDS = ("logit",)
_FEATURE_WORDS = ("feature", "embed")
_ONNX_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxJudge:
    """A user's ONNX classifier as the judge, run by onnxruntime.

    The model takes one float input laid out like the data, (N, C, H, W) or (N, F), and
    returns the logits (N, K) — and optionally a second (N, D) output of features (e.g. its
    penultimate layer); K and D are fixed in the graph, only the batch axis is free. With two
    outputs the roles are found in this order: the name given as ``logits_output`` or
    ``features_output`` (the other output takes the other role); the one output whose name
    contains ``logit`` is the logits, or the one whose name contains ``feature`` or ``embed``
    is the features; else the narrower output is the logits (equal widths need a name).
    With only logits, :meth:`features` returns the logits.

    Args:
        path: The ``.onnx`` file.
        providers: onnxruntime execution providers named explicitly (override ``device``).
        device: ``auto``, ``cpu`` or ``cuda``; CUDA is asked for only where a CUDA device
            exists.
        logits_output: Name of the logits output.
        features_output: Name of the features output.

    Attributes:
        n_labels: K, the width of the logits.
        feature_dim: D, the width of :meth:`features` (K where the model has no features).
        kind: ``onnx``.
        heldout_accuracy: None (the caller measures it on real data).
        provider: The execution provider that runs the model.
        input_shape: One item's shape as the model declares it (None for a free dimension).

    Raises:
        ModelError: The file is missing or not an ONNX model, onnxruntime cannot load it, its
            input is not one float (N, C, H, W) or (N, F), its outputs are not one or two 2-D
            outputs of fixed width, the logits cannot be told from the features, or an output
            name given is not among them.
    """

    kind = "onnx"
    heldout_accuracy: float | None = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        device: str = "auto",
        logits_output: str | None = None,
        features_output: str | None = None,
    ) -> None:
        from latentdiag.runners.device import onnx_providers
        from latentdiag.runners.onnx import _load_proto, _open_session, check_external_data

        p = Path(path)
        if not p.is_file():
            raise ModelError(f"judge model file {p} does not exist.")
        proto = _load_proto(p)
        check_external_data(proto, p)
        wanted = onnx_providers(device, providers)
        session = _open_session(p, proto, wanted)
        self.provider = str(session.get_providers()[0])
        asked = wanted[0] if isinstance(wanted[0], str) else wanted[0][0]
        if self.provider != asked and (device == "cuda" or providers):
            raise ModelError(
                f"onnxruntime could not start {asked} for {p} (it fell back to "
                f"{self.provider}); check the provider's libraries, or use device cpu."
            )
        self.path = p
        self._session = session
        inputs = list(session.get_inputs())
        listing = ", ".join(f"{i.name} {i.type} {_shape_list(i.shape)}" for i in inputs)
        if (
            len(inputs) != 1
            or inputs[0].type not in _ONNX_FLOATS
            or len(inputs[0].shape) not in (2, 4)
        ):
            raise ModelError(
                f"{p} must take one float input, images (N, C, H, W) or vectors (N, F), to be "
                f"a judge; its inputs: {listing}."
            )
        self._input = inputs[0].name
        self._dtype = _ONNX_FLOATS[inputs[0].type]
        self.input_shape: tuple[int | None, ...] = tuple(_fixed(d) for d in inputs[0].shape[1:])
        self._logits, self._features, widths = self._pick_outputs(logits_output, features_output)
        self.n_labels = widths[0]
        self.feature_dim = widths[1]

    def _pick_outputs(
        self, logits_output: str | None, features_output: str | None
    ) -> tuple[str, str | None, tuple[int, int]]:
        """(logits name, features name or None, (K, D)) by the rule of the class docstring."""
        outputs = list(self._session.get_outputs())
        names = [o.name for o in outputs]
        listing = ", ".join(f"{o.name} {_shape_list(o.shape)}" for o in outputs)
        for flag, given in (("logits_output", logits_output), ("features_output", features_output)):
            if given is not None and given not in names:
                raise ModelError(
                    f"{self.path} has no output {given!r} ({flag}); its outputs: {listing}."
                )
        if len(outputs) not in (1, 2):
            raise ModelError(
                f"{self.path} has {len(outputs)} outputs ({listing}); a judge returns the "
                "logits (N, K), and optionally features (N, D) as a second output."
            )
        widths = self._output_widths(outputs)
        if logits_output is not None and logits_output == features_output:
            raise ModelError(f"logits_output and features_output both name {logits_output!r}.")
        features: str | None = None
        if len(names) == 1:
            logits = names[0]
            if features_output is not None:
                raise ModelError(
                    f"{self.path} has one output, {logits!r}, which holds the logits; "
                    "features_output names a second output of a model that has one."
                )
        else:
            logits = _logits_of_two(names, widths, logits_output, features_output)
            if logits is None:
                raise ModelError(
                    f"cannot tell which output of {self.path} holds the logits ({listing}); "
                    "name it with logits_output (and the features with features_output)."
                )
            features = next(n for n in names if n != logits)
        k = widths[logits]
        if k < 2:
            raise ModelError(
                f"{self.path}: the logits output {logits!r} has {k} column(s); a judge "
                "returns one logit per label, at least 2."
            )
        return logits, features, (k, widths[features] if features else k)

    def _output_widths(self, outputs: list[Any]) -> dict[str, int]:
        """Each output's width, as the graph declares it (or onnxruntime infers it)."""
        widths: dict[str, int] = {}
        for o in outputs:
            if len(o.shape) != 2:
                raise ModelError(
                    f"{self.path}: output {o.name!r} has shape {_shape_list(o.shape)}; a judge's "
                    "outputs are 2-D, (N, K) logits and (N, D) features."
                )
            width = _fixed(o.shape[1])
            if width is None:
                raise ModelError(
                    f"{self.path}: output {o.name!r} has shape {_shape_list(o.shape)}, its width "
                    "not fixed; a judge's outputs have a fixed number of columns. Export the "
                    "model with only the batch axis dynamic."
                )
            widths[o.name] = width
        return widths

    def _session_run(self, fetch: list[str], x: np.ndarray) -> list[np.ndarray]:
        try:
            outs = self._session.run(fetch, {self._input: x})
        except Exception as exc:  # onnxruntime's own error types
            raise ModelError(
                f"the ONNX judge {self.path.name} failed on a batch of shape {tuple(x.shape)}: "
                f"{' '.join(str(exc).split())[:240]}"
            ) from None
        return [np.asarray(o) for o in outs]

    def _run(self, x: Any, name: str, width: int) -> np.ndarray:
        arr = _as_float_array(x)
        fits = arr.ndim == 1 + len(self.input_shape) and all(
            want is None or want == got
            for want, got in zip(self.input_shape, arr.shape[1:], strict=True)
        )
        if not fits:
            raise ModelError(
                f"the ONNX judge {self.path.name} takes {_layout_text(self.input_shape)}; the "
                f"data has shape {tuple(arr.shape)}."
            )
        arr = np.ascontiguousarray(arr, dtype=self._dtype)
        out = []
        for start in range(0, arr.shape[0], _EVAL_BATCH):
            (block,) = self._session_run([name], arr[start : start + _EVAL_BATCH])
            if block.ndim != 2 or block.shape[1] != width:
                raise ModelError(
                    f"the ONNX judge's output {name!r} has shape {block.shape}; expected "
                    f"({block.shape[0] if block.ndim else '?'}, {width})."
                )
            out.append(block.astype(np.float64))
        if not out:
            return np.zeros((0, width), dtype=np.float64)
        return np.concatenate(out, axis=0)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Label probabilities (N, K) float64: a softmax of the logits.

        Raises:
            ModelError: ``x`` does not fit the model's input, or onnxruntime fails.
        """
        return _softmax(self._run(x, self._logits, self.n_labels))

    def predict(self, x: Any) -> np.ndarray:
        """The most probable label of each row, (N,) int64.

        Raises:
            ModelError: ``x`` does not fit the model's input, or onnxruntime fails.
        """
        return np.argmax(self._run(x, self._logits, self.n_labels), axis=1).astype(np.int64)

    def features(self, x: Any) -> np.ndarray:
        """The features output (N, D) float64, or the logits where the model has none.

        Raises:
            ModelError: ``x`` does not fit the model's input, or onnxruntime fails.
        """
        if self._features is None:
            return self._run(x, self._logits, self.n_labels)
        return self._run(x, self._features, self.feature_dim)


def _logits_of_two(
    names: list[str],
    widths: dict[str, int],
    logits_output: str | None,
    features_output: str | None,
) -> str | None:
    """Which of two outputs holds the logits: as named, by its name, else the narrower one."""
    if logits_output is not None:
        return logits_output
    if features_output is not None:
        return next(n for n in names if n != features_output)
    logits_named = [n for n in names if any(w in n.lower() for w in _LOGIT_WORDS)]
    features_named = [n for n in names if any(w in n.lower() for w in _FEATURE_WORDS)]
    if len(logits_named) == 1:
        return logits_named[0]
    if len(features_named) == 1:
        return next(n for n in names if n != features_named[0])
    if widths[names[0]] != widths[names[1]]:
        return min(names, key=lambda n: widths[n])
    return None


def _fixed(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, (int, np.integer)) and int(dim) > 0 else None


def _shape_list(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if _fixed(d) is not None else "?" for d in shape) + ")"
