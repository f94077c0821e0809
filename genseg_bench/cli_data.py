"""The ``data`` command group: prepare, list, push and pull prepared data sets.

``--size`` is checked before anything is read. Without ``--size`` a set is
prepared at the image size of the tasks that use it: 256 px for the 2D sets, a
64-voxel cube for the 3D MSD sets, whose ~35x50x35 volumes would otherwise be
blown up to 256^3 cubes (about 17 GB for the hippocampus set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genseg_bench.cli_common import DEFAULT_STORE, StoreOpt, console, friendly, note
from genseg_bench.data.store import Store
from genseg_bench.values import MIN_IMAGE_SIZE, check_at_least

data_app = typer.Typer(help="Prepare, list, push and pull data sets.", no_args_is_help=True)

DEFAULT_SIZE = {2: 256, 3: 64}
"""Size of a set no task uses: the paper's 2D size, and the 3D tasks' cube edge."""

SizeOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Side length after resizing, {MIN_IMAGE_SIZE} or more (3D: cube edge). "
        "Default: the image size of the tasks that use the set (2D: 256, 3D: 64)."
    ),
]


def resolve_size(dataset: str, size: int | None) -> int:
    """``size`` when given (checked), else the image size of the tasks that read ``dataset``, said in a note."""
    from genseg_bench.catalog import Catalog
    from genseg_bench.data.sources import get_source

    info = get_source(dataset)
    if size is not None:
        check_at_least(size, "--size", MIN_IMAGE_SIZE, f"Use e.g. --size {DEFAULT_SIZE[info.dims]}.")
        return size
    users = sorted((t for t in Catalog.load().tasks.values() if dataset in t.sources), key=lambda t: t.id)
    if users:
        chosen = max(t.image_size for t in users)
        ids = [t.id for t in users if t.image_size == chosen]
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        why = f"the image size of task(s) {shown}"
    else:
        chosen, why = DEFAULT_SIZE[info.dims], f"the default for {info.dims}D sets"
    note(f"no --size given: {dataset} at {chosen} ({why}); pass --size N for another size.")
    return chosen


@data_app.command("prepare")
@friendly
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Data set id, e.g. kvasir, cvc-clinicdb, msd-hippocampus.")],
    source_dir: Annotated[
        Path | None, typer.Option("--from", help="Folder of the official distribution.")
    ] = None,
    size: SizeOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    overwrite: bool = False,
) -> None:
    """Import a raw data set into the fingerprinted prepared store."""
    from rich.box import SIMPLE_HEAD
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from genseg_bench.data.sources import get_source

    info = get_source(dataset)
    size = resolve_size(dataset, size)
    st = Store(store)
    if st.is_prepared(dataset, size) and not overwrite:
        p = st.load(dataset, size)
        console.print(
            f"{dataset} is already prepared at {size}px ({len(p.case_ids)} cases, fingerprint "
            f"{p.fingerprint}) in {p.path}. Use --overwrite to prepare it again."
        )
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as progress:
        bar = progress.add_task(f"reading {info.title}", total=None)
        p = st.prepare(
            dataset,
            source_dir,
            size,
            progress=lambda n: progress.update(bar, description=f"reading {info.title}: {n} cases"),
            overwrite=overwrite,
        )
    console.print(
        f"[green]prepared[/] {dataset}: {len(p.case_ids)} cases at {size}px, fingerprint {p.fingerprint}, "
        f"in {p.path}\nbinarisation: {info.binarisation}"
    )
    # What binarisation changed: one line of totals, then the files with the most changed
    # pixels. A JPEG set has noise in nearly every mask, so only the largest are listed.
    values = p.meta.get("mask_values")
    if not values:
        return
    changed, checked = values["files_changed"], values["files_checked"]
    if not changed:
        console.print(f"masks: all {checked} mask files were two-valued (0/255); nothing changed.")
        return
    console.print(
        f"[yellow]masks:[/] {changed} of {checked} mask files held stray values; "
        f"{values['pixels_changed']:,} pixels changed by the rule above."
    )
    shown = values["top"][:10]
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("stray values", overflow="fold")
    table.add_column("pixels", justify="right")
    for row in shown:
        vals = ", ".join(str(v) for v in row["values"][:5])
        if row["n_values"] > 5:
            vals += f" (+{row['n_values'] - 5} more)"
        table.add_row(row["file"], vals, f"{row['pixels']:,}")
    console.print(table)
    if changed > len(shown):
        console.print(
            f"... and {changed - len(shown)} more files; the {len(values['top'])} largest are listed "
            f"in {p.path / 'meta.json'} (mask_values)."
        )


@data_app.command("list")
@friendly
def data_list(store: StoreOpt = DEFAULT_STORE) -> None:
    """Every known data set and the sizes prepared in the store."""
    from genseg_bench.data.sources import all_sources

    st = Store(store)
    table = Table(title=f"data sets (store: {store})")
    for col in ("id", "title", "dim", "prepared sizes", "licence"):
        table.add_column(col, overflow="fold")
    for sid, info in sorted(all_sources().items()):
        sizes = ", ".join(map(str, st.prepared_sizes(sid))) or "-"
        table.add_row(sid, info.title, f"{info.dims}D", sizes, info.licence)
    console.print(table)


@data_app.command("push")
@friendly
def data_push(
    dataset: str,
    repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
    size: SizeOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    token: Annotated[str | None, typer.Option(help="Hub token (default: the logged-in one).")] = None,
    private: bool = False,
) -> None:
    """Push a prepared set to a Hugging Face dataset repo (one commit)."""
    from genseg_bench.hub import push_prepared

    size = resolve_size(dataset, size)
    url = push_prepared(Store(store), dataset, size, repo, token, private)
    console.print(f"[green]pushed[/] {dataset} ({size}px) to {repo}: {url}")


@data_app.command("pull")
@friendly
def data_pull(
    dataset: str,
    repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
    size: SizeOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    token: str | None = None,
    revision: str | None = None,
) -> None:
    """Pull a prepared set from a Hugging Face dataset repo into the store (fingerprint checked)."""
    from genseg_bench.hub import pull_prepared

    size = resolve_size(dataset, size)
    p = pull_prepared(Store(store), dataset, size, repo, token, revision)
    console.print(
        f"[green]pulled[/] {dataset} ({size}px, {len(p.case_ids)} cases, fingerprint {p.fingerprint})"
    )
