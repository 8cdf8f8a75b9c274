"""``latentdiag data``: make the synthetic dataset and look at any data source."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from latentdiag.cli._common import out_option, seed_option

F = TypeVar("F", bound=Callable[..., Any])


def data_source_options(f: F) -> F:
    """Options that say how to read a DATA argument (``--size``, ``--channels``, ``--split``,
    ``--labels``, ``--label-key``, ``--images-key``, ``--labels-key``, ``--n``, ``--strict``);
    they map one to one onto :func:`latentdiag.data.open_dataset`."""
    options = [
        click.option(
            "--size",
            type=int,
            default=None,
            help="Resize images to S×S (default: as stored; synthetic 32).",
        ),
        click.option(
            "--channels", type=int, default=None, help="1 (gray) or 3 (RGB) (default: as stored)."
        ),
        click.option(
            "--split",
            default="train",
            show_default=True,
            help="MedMNIST split of an .npz / HDF5: train, val or test.",
        ),
        click.option(
            "--labels",
            "labels_file",
            default=None,
            help="Labels file (.npy or .csv) for .npz / .npy / HDF5 images.",
        ),
        click.option(
            "--label-key",
            metavar="COL",
            default=None,
            help="The metadata column that is the label (CSV labels with several columns, a "
            "folder level); default: the CSV column named label/class/... else its last, a "
            "folder's first level.",
        ),
        click.option(
            "--images-key", default=None, help="Images array: .npz key or HDF5 dataset path."
        ),
        click.option(
            "--labels-key", default=None, help="Labels array: .npz key or HDF5 dataset path."
        ),
        click.option(
            "--n",
            "n",
            type=int,
            default=None,
            help="Synthetic: images to generate; others: a random subset of N.",
        ),
        click.option(
            "--strict", is_flag=True, help="Stop at an unreadable image instead of skipping it."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def open_from_options(source: str, *, seed: int, **options: Any) -> Any:
    """``open_dataset`` with the values of :func:`data_source_options`."""
    from latentdiag.data import open_dataset

    options["labels"] = options.pop("labels_file", None)
    return open_dataset(source, seed=seed, **options)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each warning raised inside as one ``Warning: ...`` line on stderr.

    Every :class:`~latentdiag.data.DataWarning` is shown; other warnings keep Python's filters
    (so library deprecation notices stay hidden, and a repeated one shows once).
    """
    from latentdiag.data import DataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            yield
        finally:
            for w in caught:
                click.echo(f"Warning: {' '.join(str(w.message).split())}", err=True)


@click.group("data")
def data_group() -> None:
    """Make the synthetic dataset, and look at any data source.

    \b
    Data sources (the DATA of embed, train and preview):
      images/            a folder with one subfolder per label (PNG, JPEG, TIFF, BMP);
                         deeper subfolders are columns level2, level3, ...
      pneumonia.npz      MedMNIST layout (train_images, ...; --split) or images/labels
      images.npy         with --labels labels.npy|labels.csv (every CSV column is read;
                         --label-key COL chooses the label)
      data.h5            --images-key / --labels-key name the datasets when ambiguous
      synthetic          the built-in pseudo-modalities (chest X-ray, OCT, pathology, derm)
      digits             scikit-learn's 8×8 digits
    """


@data_group.command("synth")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--n",
    "n",
    type=int,
    default=4000,
    show_default=True,
    help="Number of images (balanced over the four modalities).",
)
@click.option(
    "--size", type=int, default=32, show_default=True, help="Image side in pixels (32, 64 or 128)."
)
@click.option("--channels", type=int, default=1, show_default=True, help="1 (gray) or 3 (RGB).")
@seed_option
def synth_command(out: str, n: int, size: int, channels: int, seed: int) -> None:
    """Write the built-in synthetic pseudo-modality dataset to OUT (.npz or .h5).

    Four pseudo-modalities — chest X-ray, OCT, pathology, dermatoscopy — with shared nuisance
    factors (rotation, scale, shift, brightness, contrast, noise) and one structure factor
    each. The file holds images, labels, label names, factors and factor names, and opens
    again with any command that takes DATA.

    \b
    Examples:
      latentdiag data synth synthetic.npz --n 20000 --size 64
      latentdiag data preview synthetic.npz -o grid.png
    """
    from latentdiag.data.io import check_dataset_path, write_dataset
    from latentdiag.data.synthetic import generate_synthetic

    path = check_dataset_path(out)
    data = generate_synthetic(n, size=size, channels=channels, seed=seed)
    write_dataset(path, data.images, data.labels, data.label_names, data.factors, data.factor_names)
    click.echo(
        f"wrote {path}: {n:,} images {channels}×{size}×{size}, labels "
        f"{', '.join(data.label_names)}; factors {', '.join(data.factor_names)}"
    )


@data_group.command("preview")
@click.argument("source")
@out_option(help="Output image (.png, .jpg, .svg or .pdf).")
@click.option(
    "--per-label", type=int, default=8, show_default=True, help="Images per label (columns)."
)
@data_source_options
@seed_option
def preview_command(source: str, out: str, per_label: int, seed: int, **options: Any) -> None:
    """Draw a grid of example images from SOURCE, one row per label.

    SOURCE is any data source: a folder, an .npz, .npy or .h5 file, `synthetic` or `digits`.
    Prints what the data holds, with its metadata columns (name, kind, categories) and the
    one that is the label (--label-key chooses another).

    \b
    Examples:
      latentdiag data preview synthetic --size 64 --channels 3 -o grid.png
      latentdiag data preview pneumoniamnist.npz --split test -o grid.png
      latentdiag data preview scans/ --label-key level2 -o grid.png
    """
    from latentdiag.data import save_preview
    from latentdiag.data.sources import describe

    with one_line_warnings():
        ds = open_from_options(source, seed=seed, **options)
        path = save_preview(ds, out, per_label=per_label, seed=seed)
    click.echo(f"wrote {path}: {describe(ds)}")
