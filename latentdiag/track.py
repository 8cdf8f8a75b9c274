"""Latent diagnostics while a model trains: ``latentdiag.track``.

Every ``every`` epochs a :class:`Tracker` embeds a fixed validation set with your encoder (or
takes latents you computed), computes a chosen set of latentdiag metrics on them, and logs them:

* always to ``LOG_DIR/track.jsonl`` (one JSON object per evaluation) and ``LOG_DIR/track.csv``
  (one row per evaluation, one column per metric);
* to TensorBoard (``LOG_DIR/tensorboard``) when ``torch.utils.tensorboard`` can be imported (the
  ``tensorboard`` package), and to MLflow when ``mlflow`` is installed and a run is active —
  each imported only when used;
* to a PyTorch Lightning run through :class:`LatentDiagCallback`
  (``latentdiag.track.LatentDiagCallback``, needs ``lightning`` or ``pytorch_lightning``).

::

    from latentdiag.track import Tracker

    tracker = Tracker(model.encoder, x_val, labels=y_val, log_dir="runs/track", every=2)
    for epoch in range(epochs):
        train_one_epoch(model)
        tracker.step(epoch)          # embeds x_val with model.encoder every 2nd epoch
    tracker.close()

``latentdiag report`` draws a track log's metrics over epochs (``--track LOG_DIR`` or the
``track.jsonl`` of a reference run).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.atomic import atomic_write_text
from latentdiag.errors import ConfigError, MetricInputError

__all__ = [
    "DEFAULT_METRICS",
    "TRACK_FILE",
    "LatentDiagCallback",
    "Tracker",
    "read_track",
]

#: The log a tracker writes in its folder, one JSON object per evaluation.
TRACK_FILE = "track.jsonl"
#: Cheap metrics logged by default (milliseconds on thousands of rows): computed for the
#: whole latent space and each partition.
DEFAULT_METRICS = (
    "separation.silhouette",
    "separation.centroid_distance",
    "separation.knn_accuracy",
    "information.active_units",
    "information.kl_per_dim",
)
# What the log leaves out: tables and lists (keys ending so), and the file's facts.
_SKIP_SUFFIXES = (
    "matrix",
    "labels",
    "mask",
    "per_dim",
    "per_label",
    "per_batch",
    "_ci",
    "threshold",
)
_NOT_LOGGED = {"settings", "skipped", "notes", "label_names", "batch_names", "factor_names"}
_NOT_LOGGED |= {"n_samples", "latent_dim", "label_key", "batch_key", "dims"}

Encoder = Callable[[Any], Any]


def _flat(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar numbers of a metrics dict, by dotted key (lists, tables and text left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in _NOT_LOGGED or any(key.endswith(s) for s in _SKIP_SUFFIXES):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, path + "."))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        else:
            out[path] = float(value)
    return out


class Tracker:
    """Embed a validation set every N epochs and log latentdiag metrics of it.

    Args:
        encode: Your encoder: a function or ``torch.nn.Module`` taking a batch of the
            validation inputs (a tensor for a module, a numpy array for a function) and
            returning the means (B, d), or ``(mu, logvar, ...)``, or a dict with ``mu`` (and
            ``logvar``). None when you pass latents to :meth:`log` yourself.
        x: The validation inputs (numpy array or tensor), embedded in batches of
            ``batch_size``; None with ``encode=None``.
        labels: One label per validation row (enables the separation metrics).
        label_names: Names of labels 0..K-1.
        factors: Ground-truth factors (N, F) of the validation rows (enables the
            disentanglement metrics if asked for).
        partitions: Named latent subspaces ``{name: (start, stop)}``; every metric is also
            logged for each.
        metrics: Metric keys to compute (see docs/metrics.md § JSON keys), or ``"all"``.
        every: Evaluate on epochs 0, N, 2N, ... (and always when ``step(force=True)``).
        log_dir: The folder for track.jsonl, track.csv and the TensorBoard events.
        tensorboard: ``"auto"`` (when importable), True (required) or False.
        mlflow: ``"auto"`` (when installed and a run is active), True or False.
        batch_size: Rows per encoder call.
        seed: Seed of the metrics' samples.

    Raises:
        ConfigError: Bad options, or TensorBoard / MLflow asked for and not installed.
    """

    def __init__(
        self,
        encode: Encoder | None,
        x: Any = None,
        *,
        labels: Any = None,
        label_names: Sequence[str] | None = None,
        factors: Any = None,
        partitions: Mapping[str, tuple[int, int]] | None = None,
        metrics: Sequence[str] | str = DEFAULT_METRICS,
        every: int = 1,
        log_dir: str | os.PathLike[str] = "track",
        tensorboard: bool | str = "auto",
        mlflow: bool | str = "auto",
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be a positive number of epochs; got {every!r}.")
        if encode is not None and x is None:
            raise ConfigError(
                "an encoder needs the validation inputs x to embed; give x, or pass latents "
                "to Tracker.log yourself."
            )
        self.encode, self.x = encode, x
        self.labels = None if labels is None else np.asarray(labels)
        self.label_names = list(label_names) if label_names is not None else None
        self.factors = None if factors is None else np.asarray(factors)
        self.partitions = dict(partitions or {})
        self.metrics = None if metrics == "all" else tuple(metrics)
        self.every, self.batch_size, self.seed = every, batch_size, seed
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = []
        self._columns: list[str] | None = _csv_columns(self.log_dir / "track.csv")
        self._tb = self._open_tensorboard(tensorboard)
        self._mlflow = self._open_mlflow(mlflow)

    # -- sinks ---------------------------------------------------------------------------------
    def _open_tensorboard(self, wanted: bool | str) -> Any:
        if wanted is False:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if wanted is True:
                raise ConfigError(
                    "tensorboard=True needs the tensorboard package: pip install tensorboard "
                    "(or latentdiag[track])."
                ) from None
            return None
        return SummaryWriter(log_dir=str(self.log_dir / "tensorboard"))

    def _open_mlflow(self, wanted: bool | str) -> Any:
        if wanted is False:
            return None
        try:
            import mlflow
        except ImportError:
            if wanted is True:
                raise ConfigError("mlflow=True needs mlflow: pip install mlflow.") from None
            return None
        if wanted == "auto" and mlflow.active_run() is None:
            return None
        return mlflow

    # -- evaluating ----------------------------------------------------------------------------
    def due(self, epoch: int) -> bool:
        """Whether :meth:`step` evaluates at ``epoch``."""
        return epoch % self.every == 0

    def step(self, epoch: int, *, step: int | None = None, force: bool = False) -> dict | None:
        """Embed the validation set and log its metrics, when ``epoch`` is due.

        Returns:
            The logged record (see :meth:`log`), or None when this epoch is not due.
        """
        if not (force or self.due(epoch)):
            return None
        if self.encode is None or self.x is None:
            raise ConfigError(
                "this tracker has no encoder or no inputs x; pass latents to Tracker.log."
            )
        mu, logvar = self._embed()
        return self.log(epoch, mu, logvar=logvar, step=step)

    def _embed(self) -> tuple[np.ndarray, np.ndarray | None]:
        mus: list[np.ndarray] = []
        logvars: list[np.ndarray] = []
        n = len(self.x)
        module = _torch_module(self.encode)
        for start in range(0, n, self.batch_size):
            batch = self.x[start : start + self.batch_size]
            out = _run_module(module, batch) if module is not None else self.encode(batch)  # type: ignore[misc]
            mu, logvar = _split_output(out)
            mus.append(mu)
            if logvar is not None:
                logvars.append(logvar)
        return np.concatenate(mus), (np.concatenate(logvars) if len(logvars) == len(mus) else None)

    def log(
        self,
        epoch: int,
        mu: Any,
        *,
        logvar: Any = None,
        step: int | None = None,
        extra: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Compute the metrics of latents you computed and log them for ``epoch``.

        Args:
            epoch: The epoch (the x axis of the plots).
            mu: (N, d) latent means of the validation rows.
            logvar: Their log-variances, if any.
            step: The global step, recorded beside the epoch.
            extra: Other numbers to log with them (losses, learning rate).

        Returns:
            ``{"epoch", "step", "time", "seconds", "metrics": {dotted key: value}}``, the line
            written to track.jsonl.
        """
        from latentdiag.metrics import compute_metrics

        t0 = time.perf_counter()
        arr = np.asarray(mu, dtype=np.float32)
        if self.labels is not None and len(self.labels) != len(arr):
            raise MetricInputError(
                f"the tracker has {len(self.labels):,} labels but the latents have "
                f"{len(arr):,} rows; log the latents of the validation set it was given."
            )
        include = None
        if self.metrics is not None:
            include = [*self.metrics]
            include += [f"partitions.{p}.{m}" for p in self.partitions for m in self.metrics]
        result = compute_metrics(
            arr,
            labels=self.labels,
            label_names=self.label_names,
            logvar=logvar,
            factors=self.factors,
            partitions=self.partitions or None,
            include=include,
            seed=self.seed,
            parallel=False,
        )
        values = _flat(result)
        for key, value in (extra or {}).items():
            values[str(key)] = float(value)
        record = {
            "epoch": int(epoch),
            "step": None if step is None else int(step),
            "time": time.time(),
            "seconds": round(time.perf_counter() - t0, 4),
            "metrics": values,
        }
        self._write(record)
        self.history.append(record)
        return record

    def _write(self, record: dict[str, Any]) -> None:
        values = record["metrics"]
        with open(self.log_dir / TRACK_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(_finite(record)) + "\n")
        self._write_csv(record)
        x = record["step"] if record["step"] is not None else record["epoch"]
        if self._tb is not None:
            for key, value in values.items():
                if math.isfinite(value):
                    self._tb.add_scalar(f"latentdiag/{key}", value, x)
            self._tb.flush()
        if self._mlflow is not None:
            finite = {f"latentdiag.{k}": v for k, v in values.items() if math.isfinite(v)}
            self._mlflow.log_metrics(finite, step=int(x))

    def _write_csv(self, record: dict[str, Any]) -> None:
        values = {k: v for k, v in record["metrics"].items() if v is not None}
        if self._columns is None:
            self._columns = sorted(record["metrics"])
            with open(self.log_dir / "track.csv", "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(["epoch", "step", *self._columns])
        with open(self.log_dir / "track.csv", "a", newline="", encoding="utf-8") as f:
            row = [record["epoch"], "" if record["step"] is None else record["step"]]
            row += ["" if values.get(k) is None else values[k] for k in self._columns]
            csv.writer(f).writerow(row)

    def rewind(self, keep_epochs: int) -> None:
        """Forget the records of epochs after ``keep_epochs`` (a run resumed from a checkpoint
        taken before them): track.jsonl and track.csv are rewritten without them."""
        path = self.log_dir / TRACK_FILE
        if not path.exists():
            return
        records = [r for r in read_track_lenient(path) if r["epoch"] <= keep_epochs]
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_text(path, text)
        (self.log_dir / "track.csv").unlink(missing_ok=True)
        self._columns = None
        for r in records:
            self._write_csv(r)

    def close(self) -> None:
        """Flush and close TensorBoard's writer."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["metrics"] = {k: (v if math.isfinite(v) else None) for k, v in record["metrics"].items()}
    return out


def _torch_module(encode: Any) -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return encode if isinstance(encode, torch.nn.Module) else None


def _run_module(module: Any, batch: Any) -> Any:
    import torch

    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            xb = torch.as_tensor(np.asarray(batch) if not torch.is_tensor(batch) else batch)
            return module(xb.to(device=device, dtype=param.dtype if param is not None else None))
    finally:
        module.train(was_training)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _split_output(out: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(mu, logvar or None) from what an encoder returns."""
    if isinstance(out, Mapping):
        mu = out.get("mu", out.get("embedding", out.get("z")))
        if mu is None:
            raise ConfigError(
                f"the encoder returned a dict with keys {sorted(out)}; expected 'mu' (and "
                "'logvar')."
            )
        lv = out.get("logvar", out.get("log_var", out.get("log_covariance")))
        mu_arr = _numpy(mu).reshape(len(mu), -1)
        return mu_arr, None if lv is None else _numpy(lv).reshape(len(lv), -1)
    if isinstance(out, (tuple, list)):
        mu = _numpy(out[0])
        lv = _numpy(out[1]) if len(out) > 1 and out[1] is not None else None
        if lv is not None and lv.shape != mu.shape:
            lv = None
        return mu.reshape(len(mu), -1), None if lv is None else lv.reshape(len(lv), -1)
    mu = _numpy(out)
    return mu.reshape(len(mu), -1), None


def _csv_columns(path: Path) -> list[str] | None:
    """The metric columns of an existing track.csv (a resumed run appends to it)."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    return list(header[2:]) if header and header[:2] == ["epoch", "step"] else None


def read_track_lenient(path: Path) -> list[dict[str, Any]]:
    """The readable records of a track.jsonl (a torn last line, from a kill, is dropped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "epoch" in rec and isinstance(rec.get("metrics"), dict):
            out.append(rec)
    return out


def read_track(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a track log (a folder holding track.jsonl, or the file itself).

    Raises:
        ConfigError: Nothing readable is there.
    """
    p = Path(path)
    f = p / TRACK_FILE if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"no track log at {p} (expected {TRACK_FILE}, written by a Tracker).")
    records = []
    for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if "epoch" not in rec or not isinstance(rec.get("metrics"), dict):
                raise ValueError
        except (ValueError, TypeError, AttributeError):
            raise ConfigError(
                f"{f}, line {n}, is not a track record; the log is damaged."
            ) from None
        records.append(rec)
    if not records:
        raise ConfigError(f"{f} holds no records yet.")
    return records


def _lightning_base() -> Any:
    import importlib

    for name in ("lightning.pytorch.callbacks", "pytorch_lightning.callbacks"):
        try:
            return importlib.import_module(name).Callback
        except ImportError:
            continue
    return None


def LatentDiagCallback(  # a factory named as the class it returns (Lightning is optional)
    tracker: Tracker, *, encoder: str | Callable[[Any, Any], Any] | None = None
) -> Any:
    """A PyTorch Lightning callback that runs ``tracker`` at the end of each validation epoch.

    Args:
        tracker: A :class:`Tracker` built without an encoder (``Tracker(None, labels=...)``)
            or with one.
        encoder: How to embed the tracker's ``x`` with the LightningModule: the name of its
            attribute or method (e.g. ``"encoder"``), or a function ``(module, x) -> mu``.
            None uses the tracker's own encoder.

    Returns:
        An instance of a ``Callback`` subclass of the installed Lightning.

    Raises:
        ConfigError: Lightning is not installed.
    """
    base = _lightning_base()
    if base is None:
        raise ConfigError(
            "LatentDiagCallback needs PyTorch Lightning: pip install lightning (or "
            "latentdiag[lightning])."
        )

    class _Callback(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.tracker = tracker

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if getattr(trainer, "sanity_checking", False):
                return
            epoch = int(trainer.current_epoch)
            if not tracker.due(epoch):
                return
            if encoder is None:
                tracker.step(epoch, step=int(trainer.global_step), force=True)
                return
            fn = encoder if callable(encoder) else None
            if fn is None:
                target = getattr(pl_module, str(encoder))
                saved = tracker.encode
                tracker.encode = target
                try:
                    tracker.step(epoch, step=int(trainer.global_step), force=True)
                finally:
                    tracker.encode = saved
                return
            saved = tracker.encode

            def embed(xb: Any) -> Any:
                import torch

                with torch.no_grad():
                    return fn(pl_module, xb)

            tracker.encode = embed
            try:
                tracker.step(epoch, step=int(trainer.global_step), force=True)
            finally:
                tracker.encode = saved

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            tracker.close()

    return _Callback()
