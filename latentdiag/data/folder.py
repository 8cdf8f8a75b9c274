"""The image-folder source: one subfolder per label, images decoded on demand.

The first level of subfolders is the label (column ``label``); images nested deeper give columns
``level2``, ``level3``... holding the names of their deeper folders
(``root/oct/site_A/x.png``: label ``oct``, level2 ``site_A``), missing for images that lie
less deep. ``label_key`` may make any of these columns the label.

Opening a folder lists its files and reads each image's header (size and mode, a few hundred
bytes); pixels are decoded only in ``__getitem__``, so a folder of 100,000 images streams
through DataLoader workers instead of being loaded whole.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentdiag.columns import Column, categorical_column, column_from_values
from latentdiag.data._common import count, examples, natural_sorted, warn
from latentdiag.data.base import UNLABELED, ImageDataset
from latentdiag.data.convert import decode_image, mode_channels
from latentdiag.data.labels import check_column_exists, choose_label_column
from latentdiag.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "FolderDataset", "open_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm")


class FolderDataset(ImageDataset):
    """Images listed from a folder, decoded one by one.

    Attributes:
        root: The folder.
        paths: File paths relative to ``root`` (POSIX separators), in item order.
        labels: (N,) int64 label of each file, or None for an unlabelled folder.
        skipped: Counts of files left out: ``not_image``, ``unreadable``, ``no_label``.
        strict: A truncated image is an error instead of being decoded as far as it goes.
        columns: ``label`` (the first folder level) and ``level2``, ``level3``... (deeper
            folders; missing for files less deep), one value per file; None when unlabelled.
        label_key: The column the labels come from, or None when unlabelled.
    """

    def __init__(
        self,
        root: str,
        paths: Sequence[str],
        *,
        labels: np.ndarray | None,
        label_names: list[str] | None,
        channels: int,
        size: int,
        skipped: dict[str, int],
        strict: bool = False,
        columns: dict[str, Column] | None = None,
        label_key: str | None = None,
    ) -> None:
        self.root = root
        self.paths = list(paths)
        self.labels = labels
        self.label_names = label_names
        self.channels = channels
        self.size = size
        self.skipped = skipped
        self.strict = strict
        self.source = root
        self.columns = columns
        self.label_key = label_key
        self._no_factors = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rel = self.paths[index]
        index = int(index) % len(self.paths)
        path = os.path.join(self.root, rel)
        try:
            try:
                image = decode_image(path, channels=self.channels, size=self.size)
            except OSError as exc:
                if self.strict or "truncated" not in str(exc):
                    raise
                warn(
                    f"image {path} is truncated; decoded the part it holds, the rest filled "
                    "(with --strict this is an error)."
                )
                image = decode_image(
                    path, channels=self.channels, size=self.size, allow_truncated=True
                )
        except Exception as exc:  # Pillow raises many kinds for damaged files
            raise DataError(
                f"cannot decode image {path}: {_reason(exc, path)}; the file is damaged; remove "
                "or replace it."
            ) from exc
        return {
            "image": image,
            "label": UNLABELED if self.labels is None else int(self.labels[index]),
            "factors": self._no_factors,
            "sample_id": rel,
            "index": index,
        }


def _visible(name: str) -> bool:
    return not name.startswith((".", "__MACOSX"))


def _walk(folder: str) -> list[str]:
    """Every visible file under ``folder`` (recursively), sorted, as absolute paths."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if _visible(d)]
        found.extend(os.path.join(dirpath, f) for f in filenames if _visible(f))
    return natural_sorted(found)


def _header(path: str) -> tuple[int, int, str]:
    """(width, height, mode) from the image header; raises what Pillow raises."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size[0], im.size[1], im.mode


def open_folder(
    path: str,
    *,
    size: int | None,
    channels: int | None,
    n: int | None,
    seed: int,
    strict: bool,
    label_key: str | None = None,
) -> FolderDataset:
    """List an image folder: labels from subfolder names (sorted naturally), or no labels when
    the images lie directly in it; deeper subfolders give columns ``level2``, ``level3``...

    Args:
        path: The folder.
        size: Side to resize to; None for the most common (shorter) side.
        channels: 1 or 3; None for the channels of most images.
        n: Keep a random subset of this many images (chosen with ``seed``); None for all.
        seed: Seed of the subset.
        strict: Stop at the first unreadable image instead of skipping it.
        label_key: The column that is the label (``label``, ``level2``...); None for
            ``label``, the first level.

    Raises:
        DataError: The folder is empty, holds no images, or (``strict``) an unreadable one;
            ``label_key`` names no column (the message lists them) or one with missing values.
    """
    root = os.path.normpath(path)
    try:
        entries = sorted(e for e in os.listdir(root) if _visible(e))
    except OSError as exc:
        raise DataError(f"cannot list folder {root}: {exc}.") from exc
    subdirs = natural_sorted(e for e in entries if os.path.isdir(os.path.join(root, e)))
    loose = [os.path.join(root, e) for e in entries if os.path.isfile(os.path.join(root, e))]
    if not subdirs and not loose:
        raise DataError(
            f"folder {root} is empty; expected one subfolder per label holding images (or "
            "images directly in it, for unlabelled data)."
        )

    is_image = lambda p: p.lower().endswith(IMAGE_SUFFIXES)  # noqa: E731
    skipped = {"not_image": 0, "unreadable": 0, "no_label": 0}
    others: list[str] = []
    groups: list[tuple[str | None, list[str]]] = []
    if subdirs:
        loose_images = [p for p in loose if is_image(p)]
        if loose_images:
            skipped["no_label"] = len(loose_images)
            shown = examples([os.path.basename(p) for p in loose_images])
            warn(
                f"{root}: skipped {count(len(loose_images), 'image')} outside the label "
                f"subfolders ({shown})."
            )
        others += [p for p in loose if not is_image(p)]
        for d in subdirs:
            files = _walk(os.path.join(root, d))
            groups.append((d, [p for p in files if is_image(p)]))
            others += [p for p in files if not is_image(p)]
    else:
        groups.append((None, [p for p in loose if is_image(p)]))
        others += [p for p in loose if not is_image(p)]
    if others:
        skipped["not_image"] = len(others)
        warn(
            f"{root}: skipped {count(len(others), 'non-image file')} "
            f"({examples([os.path.relpath(p, root) for p in others])})."
        )

    empty = [d for d, files in groups if d is not None and not files]
    groups = [(d, files) for d, files in groups if files]
    if not groups:
        raise DataError(
            f"found no images in {root}; looked for {', '.join(IMAGE_SUFFIXES)} files"
            + (f" in its subfolders {examples(subdirs)}" if subdirs else "")
            + "."
        )
    if empty:
        warn(f"{root}: label folders with no images are left out: {examples(empty)}.")

    label_names = [d for d, _ in groups if d is not None] or None
    paths = [p for _, files in groups for p in files]
    labels = np.concatenate(
        [np.full(len(files), i, dtype=np.int64) for i, (_, files) in enumerate(groups)]
    )
    if n is not None and n < len(paths):
        rng = np.random.default_rng([seed, 0x5B5E7])
        keep = np.sort(rng.choice(len(paths), size=n, replace=False))
        paths = [paths[i] for i in keep]
        labels = labels[keep]
    elif n is not None and n > len(paths):
        warn(f"{root}: asked for {n:,} images but the folder has {len(paths):,}; using all.")

    ok = np.ones(len(paths), dtype=bool)
    shapes: Counter[tuple[int, int]] = Counter()
    modes: Counter[int] = Counter()
    bad: list[str] = []
    for i, p in enumerate(paths):
        try:
            w, h, mode = _header(p)
        except Exception as exc:  # Pillow raises many kinds for files it cannot identify
            if strict:
                raise DataError(
                    f"cannot read image {p}: {_reason(exc, p)}; remove it, or leave out --strict "
                    "to skip unreadable images."
                ) from exc
            ok[i] = False
            bad.append(f"{os.path.relpath(p, root)} ({_reason(exc, p)})")
            continue
        shapes[(w, h)] += 1
        modes[mode_channels(mode)] += 1
    if bad:
        skipped["unreadable"] = len(bad)
        warn(f"{root}: skipped {count(len(bad), 'unreadable image')}: {examples(bad, k=2)}.")
    if not ok.any():
        raise DataError(f"none of the {len(paths):,} images in {root} could be read.")
    paths = [p for p, good in zip(paths, ok, strict=True) if good]
    labels = labels[ok]

    sides: Counter[int] = Counter()
    for (w, h), k in shapes.items():
        sides[min(w, h)] += k
    native = sides.most_common(1)[0][0]
    out_size = size or native
    if len(shapes) > 1:
        listed = examples([f"{w}×{h}" for (w, h), _ in shapes.most_common()])
        warn(
            f"{root}: images have {len(shapes)} different sizes ({listed}); all are centre-cropped "
            f"to squares and resized to {out_size}×{out_size}."
        )
    out_channels = channels or (1 if modes[1] > modes[3] else 3)
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]
    if label_names is not None:
        present = np.unique(labels)
        if present.size < len(label_names):  # a subset or the skips emptied a label
            label_names = [label_names[i] for i in present]
            labels = np.searchsorted(present, labels).astype(np.int64)
    columns = None if label_names is None else _level_columns(rel, labels, label_names)
    key = None if columns is None else "label"
    if label_key is not None:
        check_column_exists(columns or {}, label_key, where=root)
        assert columns is not None
        if label_key != "label":
            labels, label_names = choose_label_column(columns, label_key, where=root)
            columns[label_key] = categorical_column(label_key, labels, label_names)
        key = label_key
    return FolderDataset(
        root,
        rel,
        labels=labels if label_names is not None else None,
        label_names=label_names,
        channels=out_channels,
        size=out_size,
        skipped=skipped,
        strict=strict,
        columns=columns,
        label_key=key,
    )


def _level_columns(rel: list[str], labels: np.ndarray, names: list[str]) -> dict[str, Column]:
    """``label`` and one column per deeper folder level that some file lies in.

    Args:
        rel: Each file's path relative to the root, ``/``-separated, the label folder first.
        labels: (N,) the first level's codes.
        names: The first level's names.
    """
    folders = [p.split("/")[1:-1] for p in rel]  # below the label folder, without the file
    columns = {"label": categorical_column("label", labels, names)}
    for depth in range(max(map(len, folders), default=0)):
        name = f"level{depth + 2}"
        values = np.array([f[depth] if len(f) > depth else None for f in folders], dtype=object)
        columns[name] = column_from_values(name, values)
    return columns


def _reason(exc: BaseException, path: str) -> str:
    """Pillow's message without the path it quotes (the warning names the file already)."""
    text = str(exc).replace(repr(path), "").replace(path, "")
    text = " ".join(text.split()).rstrip(" :") or type(exc).__name__
    return text
