"""Does a conditional decoder generate what its label asks for? The gencheck pipeline.

:func:`run_gencheck` takes a :class:`~latentdiag.generation.decoders.Decoder` and real labelled
data and measures, in this order:

1. **A judge**: a classifier trained here on the real data (a small CNN for images, an MLP for
   vectors; fixed seed; a stratified held-out split), or the user's own ONNX classifier. Its
   accuracy on real held-out data is reported first: a judge that cannot tell real labels
   apart cannot judge generated ones.
2. **Condition accuracy**: ``n_per_label`` samples generated for each label, classified by the
   judge; the share judged as the label asked for, per label, and the confusion matrix (rows:
   the label asked for; columns: the label judged). Chance is 1 / K.
3. **CAS** (classification accuracy score, Ravuri & Vinyals 2019): a classifier of the judge's
   architecture trained on the generated samples only, tested on the real held-out data.
4. **Condition sensitivity**: for the same z, how much the output changes when only the label
   changes, relative to how much it changes across z for one label (≈ 0 when the decoder
   ignores its condition).
5. **Fidelity and diversity per label**, in the judge's feature space: Fréchet distance, KID,
   and precision / recall / density / coverage (Naeem et al. 2020), real held-out samples of a
   label against the samples generated for it.

The result is the JSON-ready ``generation`` section (:class:`GenCheckResult`) plus example
samples per label for the report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentdiag.errors import DataError, ModelError
from latentdiag.generation.decoders import Decoder, as_samples

__all__ = [
    "JUDGE_RELIABLE",
    "GenCheckResult",
    "condition_sensitivity",
    "confusion_matrix",
    "load_real",
    "match_labels",
    "run_gencheck",
]

#: Below this real held-out accuracy the judge is flagged as unreliable.
JUDGE_RELIABLE = 0.8
#: Rows of real data read by default (a stratified sample when DATA has more).
MAX_REAL = 20_000
#: z draws for the condition sensitivity (each decoded with every label).
SENSITIVITY_Z = 32
#: Examples per label kept for the report's grids.
EXAMPLES = 8
#: Neighbours of precision / recall / density / coverage (Naeem et al.'s default).
PRDC_K = 5

Progress = Callable[[str, float], None]


@dataclass
class GenCheckResult:
    """What gencheck measured.

    Attributes:
        section: The ``generation`` section of the metrics JSON (see docs/metrics.md).
        generated: Label name -> up to 8 generated samples (images (m, C, H, W) or vectors).
        real: Label name -> up to 8 real held-out samples of that label.
        kind: ``images`` or ``vectors``.
        notes: Warnings for the reader (an unreliable judge, labels skipped).
    """

    section: dict[str, Any]
    generated: dict[str, np.ndarray] = field(default_factory=dict)
    real: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "images"
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The document ``gencheck --json`` prints and ``-o DIR`` writes as generation.json."""
        return {"generation": self.section, "notes": list(self.notes), "skipped": []}


def load_real(
    data: Any, *, max_rows: int = MAX_REAL, seed: int = 0, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a labelled data source into arrays: (x, labels, label names).

    At most ``max_rows`` rows, a stratified random subset when the source holds more.

    Raises:
        DataError: DATA has no labels, or fewer than two.
    """
    names = list(data.label_names or [])
    if not data.has_labels:
        raise DataError(
            f"{data.source or 'DATA'} has no labels; gencheck judges whether each label's "
            "samples look like that label, so DATA must carry them (a folder per label, a "
            "labels column or file)."
        )
    n = len(data)
    index = np.arange(n)
    if n > max_rows:
        labels_all = _labels_of(data)
        index = _stratified(labels_all, max_rows, seed)
    first = data[int(index[0])]
    x = np.empty((len(index), *np.asarray(first["image"]).shape), dtype=np.float32)
    y = np.empty(len(index), dtype=np.int64)
    for i, j in enumerate(index):
        item = data[int(j)]
        x[i] = item["image"]
        y[i] = int(item["label"])
        if progress is not None and i % 512 == 0:
            progress("reading the real data", i / len(index))
    keep = y >= 0  # unlabelled rows (-1) cannot be judged
    x, y = x[keep], y[keep]
    present = np.unique(y)
    if present.size < 2:
        raise DataError(
            f"{data.source or 'DATA'} has {present.size} label among its rows"
            + (f" ({names[int(present[0])]})" if present.size == 1 and names else "")
            + "; gencheck compares labels and needs at least 2."
        )
    return x, y, names


def _labels_of(data: Any) -> np.ndarray:
    col = (data.columns or {}).get(data.label_key) if data.label_key else None
    codes = getattr(col, "codes", None)
    if codes is not None and len(codes) == len(data):
        return np.asarray(codes, dtype=np.int64)
    return np.array([int(data[i]["label"]) for i in range(len(data))], dtype=np.int64)


def _stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    _, take = train_test_split(idx, test_size=n, stratify=labels, random_state=seed)
    return np.sort(take)


def match_labels(decoder: Decoder, data_names: Sequence[str], n_data: int) -> np.ndarray:
    """For each data label, the decoder's label index that asks for it.

    By name where the decoder names its labels (any order); by index otherwise, which needs
    the same count.

    Raises:
        ModelError: The label sets or counts differ.
    """
    if decoder.label_names:
        mine = list(decoder.label_names)
        missing = [n for n in data_names if n not in mine]
        if missing or len(mine) != len(data_names):
            raise ModelError(
                f"the decoder's labels ({', '.join(mine)}) are not DATA's "
                f"({', '.join(data_names)}); gencheck needs the labels the decoder was trained "
                "on (choose the column with --label-key)."
            )
        return np.array([mine.index(n) for n in data_names], dtype=np.int64)
    if decoder.n_labels is not None and decoder.n_labels != n_data:
        raise ModelError(
            f"the decoder takes {decoder.n_labels} labels but DATA has {n_data}; the label "
            "count must match (choose the column with --label-key)."
        )
    return np.arange(n_data, dtype=np.int64)


def _generate(
    decoder: Decoder,
    asked: np.ndarray,
    to_decoder: np.ndarray,
    z: np.ndarray,
    item_shape: tuple[int, ...],
    batch: int = 256,
) -> np.ndarray:
    out = np.empty((len(asked), *item_shape), dtype=np.float32)
    for s in range(0, len(asked), batch):
        sl = slice(s, s + batch)
        raw = decoder.decode(np.ascontiguousarray(z[sl]), to_decoder[asked[sl]])
        got = as_samples(raw, item_shape, decoder.output)
        if got.shape[0] != len(asked[sl]):
            raise ModelError(
                f"the decoder returned {got.shape[0]} samples for a batch of {len(asked[sl])}."
            )
        out[sl] = got
    return out


def confusion_matrix(asked: np.ndarray, judged: np.ndarray, k: int) -> np.ndarray:
    """Counts (K, K): row = the label asked for, column = the label the judge saw."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (asked, judged), 1)
    return cm


def condition_sensitivity(outputs: np.ndarray, scale: np.ndarray | None = None) -> float | None:
    """How much the output moves with the label, against how much it moves with z.

    Args:
        outputs: (K, m, ...) the decoder's output for m latents z_i, each decoded with every
            one of K labels.
        scale: Per-feature scale to divide by first (the real data's spread, for vectors), or
            None.

    Returns:
        mean_i Var_label(x(z_i, ·)) / mean_label Var_i(x(·, label)), summed over features,
        unbiased variances: the ratio of the mean squared distance between two outputs of
        one z with different labels to that between two outputs of one label with different
        z. 0 when the label changes nothing; about 1 when it matters as much as z; None when
        the output does not change with z at all.
    """
    x = outputs.reshape(outputs.shape[0], outputs.shape[1], -1).astype(np.float64)
    if scale is not None:
        x = x / np.maximum(scale.reshape(1, 1, -1), 1e-12)
    between_labels = x.var(axis=0, ddof=1).sum(axis=-1).mean()
    between_z = x.var(axis=1, ddof=1).sum(axis=-1).mean()
    if not between_z > 0:
        return None
    return float(between_labels / between_z)


def _split(y: np.ndarray, heldout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=heldout, stratify=y, random_state=seed)
    return np.sort(tr), np.sort(te)


def _per_label_scores(
    real_f: np.ndarray,
    real_y: np.ndarray,
    gen_f: np.ndarray,
    gen_y: np.ndarray,
    names: Sequence[str],
    seed: int,
    notes: list[str],
) -> dict[str, dict[str, Any]]:
    from latentdiag.generation.scores import frechet_distance, kernel_inception_distance, prdc

    keys = ("frechet_distance", "kid", "precision", "recall", "density", "coverage")
    per: dict[str, dict[str, float]] = {k: {} for k in keys}
    short: list[str] = []
    for c, name in enumerate(names):
        r, g = real_f[real_y == c], gen_f[gen_y == c]
        if min(len(r), len(g)) <= PRDC_K:
            short.append(f"{name} ({len(r)} real)")
            continue
        per["frechet_distance"][name] = frechet_distance(r, g)
        per["kid"][name] = kernel_inception_distance(r, g, seed=seed)[0]
        for key, value in prdc(r, g, k=PRDC_K).items():
            per[key][name] = float(value)
    if short:
        notes.append(
            f"fidelity scores skipped for {', '.join(short)}: more than {PRDC_K} held-out "
            "real samples per label are needed."
        )
    return {
        k: {"mean": float(np.mean(list(v.values()))) if v else None, "per_label": v}
        for k, v in per.items()
    }


def run_gencheck(
    decoder: Decoder,
    x_real: np.ndarray,
    y_real: np.ndarray,
    label_names: Sequence[str],
    *,
    n_per_label: int = 200,
    seed: int = 0,
    judge: Any = None,
    judge_source: str = "",
    device: str = "cpu",
    latents: np.ndarray | None = None,
    heldout: float = 0.2,
    cas: bool = True,
    progress: Progress | None = None,
) -> GenCheckResult:
    """Measure whether ``decoder`` generates what each label asks for.

    Args:
        decoder: The conditional decoder.
        x_real: Real samples shaped like the decoder's output: images (N, C, H, W) in [0, 1]
            or vectors (N, F).
        y_real: Their labels, 0..K-1.
        label_names: Names of labels 0..K-1 (the data's).
        n_per_label: Samples generated per label.
        seed: Seed of the split, the judge, the latents and the scores.
        judge: A ready judge (e.g. :class:`~latentdiag.generation.judge.OnnxJudge`); None
            trains one on the real data.
        judge_source: What the given judge is, for the report.
        device: Where the judge trains (``cpu``, ``cuda``, ``auto``).
        latents: A pool of z (M, d) to draw from instead of the prior (e.g. the encoder's
            means of real data).
        heldout: Share of the real data held out for the judge's accuracy, CAS and fidelity.
        cas: Whether to train the classifier on generated samples (CAS).
        progress: ``progress(stage, fraction)`` callback.

    Returns:
        A :class:`GenCheckResult`.

    Raises:
        ModelError: The decoder's labels, latent size or output do not fit the data.
        DataError: Too few real samples.
    """
    from latentdiag.generation.judge import train_classifier, train_judge

    report = progress or (lambda stage, fraction: None)
    t0 = time.perf_counter()
    names = [str(n) for n in label_names]
    k = len(names)
    if n_per_label < 2:
        raise ModelError(f"-n must be at least 2 samples per label; got {n_per_label}.")
    counts = np.bincount(y_real, minlength=k)
    if (counts < 2).any():
        few = [f"{names[c]} ({int(counts[c])})" for c in np.flatnonzero(counts < 2)]
        raise DataError(
            f"every label needs at least 2 real samples (one to train the judge, one to test "
            f"it); too few for {', '.join(few)}."
        )
    to_decoder = match_labels(decoder, names, k)
    item_shape = tuple(int(s) for s in x_real.shape[1:])
    kind = "images" if len(item_shape) == 3 else "vectors"
    decoder.fit_data(x_real)
    notes: list[str] = []

    # 1. The judge.
    report("training the judge on real data", 0.0)
    if judge is None:
        trained = train_judge(
            x_real,
            y_real,
            n_labels=k,
            heldout=heldout,
            seed=seed,
            device=device,
            progress=lambda f: report("training the judge on real data", f),
        )
        judge = trained
        train_idx, test_idx = np.asarray(trained.train_index), np.asarray(trained.heldout_index)
        judge_acc = float(trained.heldout_accuracy or 0.0)
        judge_info: dict[str, Any] = {"kind": trained.kind, "source": "trained on DATA"}
    elif getattr(judge, "heldout_index", None) is not None:
        # A judge trained here before (the demo judges two decoders with one): its own split.
        train_idx, test_idx = np.asarray(judge.train_index), np.asarray(judge.heldout_index)
        judge_acc = float(judge.heldout_accuracy or 0.0)
        judge_info = {"kind": judge.kind, "source": judge_source or "trained on DATA"}
    else:
        train_idx, test_idx = _split(y_real, heldout, seed)
        judge_acc = float(np.mean(judge.predict(x_real[test_idx]) == y_real[test_idx]))
        judge_info = {"kind": getattr(judge, "kind", "onnx"), "source": judge_source or "given"}
    reliable = judge_acc >= JUDGE_RELIABLE
    judge_info.update(
        heldout_accuracy=judge_acc,
        n_train=len(train_idx),
        n_heldout=len(test_idx),
        reliable=bool(reliable),
    )
    if not reliable:
        notes.append(
            f"the judge tells real labels apart only {judge_acc:.0%} of the time on held-out "
            f"data (below {JUDGE_RELIABLE:.0%}): the generation scores that use it (condition "
            "accuracy, fidelity) are unreliable; give more real data or your own judge (--judge)."
        )

    # 2. Generate n per label.
    rng = np.random.default_rng(seed)
    asked = np.repeat(np.arange(k, dtype=np.int64), n_per_label)
    z = _latents(decoder, asked, to_decoder, rng, latents)
    report("generating samples", 0.0)
    x_gen = _generate(decoder, asked, to_decoder, z, item_shape)

    # 3. Condition accuracy.
    report("judging the samples", 0.0)
    judged = np.asarray(judge.predict(x_gen), dtype=np.int64)
    cm = confusion_matrix(asked, judged, k)
    per_label_acc = {names[c]: float(cm[c, c] / cm[c].sum()) for c in range(k)}

    # 4. Condition sensitivity: SENSITIVITY_Z latents, each decoded with every label.
    m = min(SENSITIVITY_Z, n_per_label)
    z_s = _latents(decoder, rng.integers(0, k, m), to_decoder, rng, latents)
    grid = np.stack(
        [_generate(decoder, np.full(m, c, np.int64), to_decoder, z_s, item_shape) for c in range(k)]
    )
    scale = x_real.reshape(len(x_real), -1).std(axis=0) if kind == "vectors" else None
    sensitivity = condition_sensitivity(grid, scale)
    if sensitivity is None:
        notes.append(
            "condition sensitivity is undefined: the decoder's output does not change with z."
        )

    # 5. CAS: trained on generated samples only, tested on real held-out data.
    cas_value = None
    if cas:
        report("training a classifier on generated samples (CAS)", 0.0)
        clf = train_classifier(x_gen, asked, n_labels=k, seed=seed, device=device)
        cas_value = float(np.mean(clf.predict(x_real[test_idx]) == y_real[test_idx]))

    # 6. Fidelity and diversity per label in the judge's feature space.
    report("fidelity and diversity per label", 0.0)
    real_f = np.asarray(judge.features(x_real[test_idx]), dtype=np.float64)
    gen_f = np.asarray(judge.features(x_gen), dtype=np.float64)
    fidelity = _per_label_scores(real_f, y_real[test_idx], gen_f, asked, names, seed, notes)

    section: dict[str, Any] = {
        "condition_accuracy": float(np.trace(cm) / cm.sum()),
        "condition_accuracy_per_label": per_label_acc,
        "chance_accuracy": 1.0 / k,
        "confusion_matrix": cm.tolist(),
        "cas": cas_value,
        "cas_real": judge_acc if judge_info["source"] == "trained on DATA" else None,
        "condition_sensitivity": sensitivity,
        **fidelity,
        "judge": judge_info,
        "label_names": names,
        "n_per_label": int(n_per_label),
        "n_real": len(y_real),
        "latents_from": "prior" if latents is None else "encoder",
        "decoder": decoder.description,
        "seed": int(seed),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    test_y = y_real[test_idx]
    result = GenCheckResult(section=section, kind=kind, notes=notes)
    for c, name in enumerate(names):
        result.generated[name] = x_gen[asked == c][:EXAMPLES]
        result.real[name] = x_real[test_idx][test_y == c][:EXAMPLES]
    report("done", 1.0)
    return result


def _latents(
    decoder: Decoder,
    asked: np.ndarray,
    to_decoder: np.ndarray,
    rng: np.random.Generator,
    pool: np.ndarray | None,
) -> np.ndarray:
    if pool is not None:
        if pool.ndim != 2 or pool.shape[1] != decoder.latent_dim:
            raise ModelError(
                f"the encoder gives latents of shape {pool.shape[1:]} per sample but the "
                f"decoder takes {decoder.latent_dim}; encoder and decoder must share z."
            )
        return np.ascontiguousarray(pool[rng.integers(0, len(pool), len(asked))], np.float32)
    z = decoder.sample_latents(to_decoder[asked], rng)
    if z.shape != (len(asked), decoder.latent_dim) or not np.isfinite(z).all():
        raise ModelError(
            f"the decoder's prior gave latents of shape {z.shape} (or non-finite ones); "
            f"expected ({len(asked)}, {decoder.latent_dim})."
        )
    return z


def summary_rows(section: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows for a one-screen summary, in reading order."""

    def f(v: Any, fmt: str = "{:.3f}") -> str:
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    judge = section["judge"]
    return [
        ("judge held-out accuracy (real data)", f(judge["heldout_accuracy"])),
        ("condition accuracy", f(section["condition_accuracy"])),
        ("chance", f(section["chance_accuracy"])),
        ("CAS (trained on generated, tested on real)", f(section["cas"])),
        ("condition sensitivity", f(section["condition_sensitivity"])),
        ("Fréchet distance (mean over labels)", f(section["frechet_distance"]["mean"], "{:.2f}")),
        ("KID (mean over labels)", f(section["kid"]["mean"], "{:.4f}")),
        (
            "precision / recall",
            f"{f(section['precision']['mean'])} / {f(section['recall']['mean'])}",
        ),
        (
            "density / coverage",
            f"{f(section['density']['mean'])} / {f(section['coverage']['mean'])}",
        ),
    ]
