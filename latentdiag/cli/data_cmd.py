"""``latentdiag data``: make the synthetic datasets and look at any data source."""

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
    ``--labels``, ``--label-key``, ``--data-key`` / ``--images-key``, ``--labels-key``, ``--n``,
    ``--strict``, and for vector data ``--layer``, ``--feature-columns``, ``--meta-columns``,
    ``--standardize``); they map one to one onto :func:`latentdiag.data.open_dataset` (the
    parameter of ``--data-key`` keeps its name ``images_key``)."""
    options = [
        click.option(
            "--size",
            type=int,
            default=None,
            help="Resize images to S×S (default: as stored; synthetic 32). Images only.",
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
            help="Labels file (.npy or .csv) for .npz / .npy / HDF5 images or vectors.",
        ),
        click.option(
            "--label-key",
            metavar="COL",
            default=None,
            help="The metadata column that is the label (CSV labels with several columns, a "
            "folder level, a table or AnnData obs column); default: the CSV column named "
            "label/class/... else its last, a folder's first level, a table's or obs column "
            "named label/class/cell_type/....",
        ),
        click.option(
            "--data-key",
            "--images-key",
            "images_key",
            default=None,
            help="Images or vectors array: .npz key or HDF5 dataset path.",
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
        click.option(
            "--layer",
            metavar="NAME",
            default=None,
            help="AnnData .h5ad: read this layer (e.g. counts) instead of X.",
        ),
        click.option(
            "--feature-columns",
            metavar="COLS",
            default=None,
            help="CSV / Parquet: the feature columns, comma-separated names or glob patterns "
            "(gene_*); default: every numeric column.",
        ),
        click.option(
            "--meta-columns",
            metavar="COLS",
            default=None,
            help="CSV / Parquet: numeric columns that are metadata, not features "
            "(e.g. batch,donor).",
        ),
        click.option(
            "--standardize",
            is_flag=True,
            help="Vector data: standardize each feature (mean 0, std 1 over the data).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def data_option_names() -> list[str]:
    """The parameter names :func:`data_source_options` adds (``size``, ``labels_file``, ...),
    so a command can hand every one of them on without listing them again."""

    def probe() -> None: ...

    decorated: Any = data_source_options(probe)
    return [str(p.name) for p in getattr(decorated, "__click_params__", [])]


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
    """Make the synthetic datasets, and look at any data source.

    \b
    Data sources (the DATA of embed, train and preview):
      images/            a folder with one subfolder per label (PNG, JPEG, TIFF, BMP);
                         deeper subfolders are columns level2, level3, ...
      pneumonia.npz      MedMNIST layout (train_images, ...; --split) or images/labels
      images.npy         with --labels labels.npy|labels.csv (every CSV column is read;
                         --label-key COL chooses the label)
      data.h5            --data-key / --labels-key name the datasets when ambiguous
      synthetic          the built-in pseudo-modalities (chest X-ray, OCT, pathology, derm)
      digits             scikit-learn's 8×8 digits
    \b
    Vector data (N samples × F features; never resized or rescaled; --standardize):
      x.npy, x.npz, x.h5 an (N, F) array (npz / HDF5: x, features, data, vectors or the
                         only 2-D one), with --labels as for images
      cells.csv          a table (also .tsv, .parquet): numeric columns are features,
                         others metadata (--feature-columns, --meta-columns)
      cells.h5ad         AnnData: X or --layer NAME (sparse stays sparse), obs columns
      synthetic-vectors  4 cell types over batch / library-size / shared factors
      synthetic-counts   the same as negative-binomial counts (like scRNA-seq)
    """


@data_group.command("synth")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--n",
    "n",
    type=int,
    default=4000,
    show_default=True,
    help="Number of images or vectors (balanced over the four modalities).",
)
@click.option(
    "--size", type=int, default=None, help="Image side in pixels (32, 64 or 128; default 32)."
)
@click.option("--channels", type=int, default=None, help="1 (gray) or 3 (RGB); default 1.")
@click.option("--vectors", is_flag=True, help="Write the synthetic vector data instead of images.")
@click.option("--counts", is_flag=True, help="With --vectors: integer counts (like scRNA-seq).")
@click.option(
    "--features", type=int, default=None, help="With --vectors: features per sample (default 50)."
)
@seed_option
def synth_command(
    out: str,
    n: int,
    size: int | None,
    channels: int | None,
    vectors: bool,
    counts: bool,
    features: int | None,
    seed: int,
) -> None:
    """Write the built-in synthetic pseudo-modality dataset to OUT (.npz or .h5).

    Four pseudo-modalities — chest X-ray, OCT, pathology, dermatoscopy — with shared nuisance
    factors (rotation, scale, shift, brightness, contrast, noise) and one structure factor
    each. The file holds images, labels, label names, factors and factor names, and opens
    again with any command that takes DATA.

    With --vectors: four cell types (t_cell, b_cell, monocyte, fibroblast), each with its own
    programme over the features, over shared nuisance factors (3 batches, library size,
    cell cycle, stress, hypoxia); Gaussian features, or negative-binomial counts with
    --counts. The file holds the vectors, feature names, labels (column modality), the batch
    column and the factors.

    \b
    Examples:
      latentdiag data synth synthetic.npz --n 20000 --size 64
      latentdiag data synth cells.h5 --vectors --counts --features 200
      latentdiag data preview synthetic.npz -o grid.png
    """
    from latentdiag.data.io import check_dataset_path

    path = check_dataset_path(out)
    if vectors:
        text = _synth_vectors(
            path, n=n, size=size, channels=channels, counts=counts, features=features, seed=seed
        )
        click.echo(text)
        return
    if counts or features is not None:
        from latentdiag.errors import ConfigError

        raise ConfigError("--counts and --features apply with --vectors.")
    from latentdiag.data.io import write_dataset
    from latentdiag.data.synthetic import generate_synthetic

    size, channels = size or 32, channels or 1
    data = generate_synthetic(n, size=size, channels=channels, seed=seed)
    write_dataset(path, data.images, data.labels, data.label_names, data.factors, data.factor_names)
    click.echo(
        f"wrote {path}: {n:,} images {channels}×{size}×{size}, labels "
        f"{', '.join(data.label_names)}; factors {', '.join(data.factor_names)}"
    )


def _synth_vectors(
    path: Any,
    *,
    n: int,
    size: int | None,
    channels: int | None,
    counts: bool,
    features: int | None,
    seed: int,
) -> str:
    """Write the synthetic vector data; the line to print."""
    from latentdiag.columns import categorical_column
    from latentdiag.data.io import write_vector_dataset
    from latentdiag.data.synthetic_vectors import generate_synthetic_vectors
    from latentdiag.errors import ConfigError

    if size is not None or channels is not None:
        raise ConfigError("--size and --channels apply to images, not --vectors.")
    data = generate_synthetic_vectors(n, n_features=features or 50, seed=seed, counts=counts)
    batch = categorical_column("batch", data.batch, data.batch_names)
    write_vector_dataset(
        path, data.vectors, data.labels, data.label_names, data.factors, data.factor_names,
        feature_names=data.feature_names, label_key="modality", columns={"batch": batch},
    )  # fmt: skip
    f = data.vectors.shape[1]
    what = "counts (int32)" if counts else "vectors (float32)"
    return (
        f"wrote {path}: {n:,} × {f:,} {what}, labels {', '.join(data.label_names)}; columns "
        f"modality, batch; factors {', '.join(data.factor_names)}"
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

    Vector data (tables, .h5ad, (N, F) arrays, synthetic-vectors) gets a heatmap of each
    label's mean of every standardized feature (at most 60 features: those whose label means
    differ most) and a PCA scatter coloured by label.

    \b
    Examples:
      latentdiag data preview synthetic --size 64 --channels 3 -o grid.png
      latentdiag data preview pneumoniamnist.npz --split test -o grid.png
      latentdiag data preview scans/ --label-key level2 -o grid.png
      latentdiag data preview cells.h5ad --label-key cell_type -o cells.png
    """
    from latentdiag.data import save_preview
    from latentdiag.data.sources import describe

    with one_line_warnings():
        ds = open_from_options(source, seed=seed, **options)
        path = save_preview(ds, out, per_label=per_label, seed=seed)
    click.echo(f"wrote {path}: {describe(ds)}")
