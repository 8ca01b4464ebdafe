"""Option factories shared by the commands, and the one place where options become a RunConfig.

Every option that sets a ``RunConfig`` field defaults to "not given" (None); its help text shows
the dataclass default. :func:`run_config` layers: ``RunConfig`` defaults < ``--config`` TOML <
the options actually given on the command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from pathosam_wsi.config import SECTIONS, RunConfig
from pathosam_wsi.errors import ConfigError

__all__ = [
    "CONFIG_FIELDS",
    "check_model_name",
    "config_options",
    "given_overrides",
    "model_options",
    "out_dir_option",
    "run_config",
    "slide_options",
    "watershed_options",
]

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_FIELDS: dict[str, str] = {}
"""click parameter name -> the ``RunConfig`` field it sets (``"tiling.tile_px"``)."""

_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def _default_of(field: str) -> Any:
    """The dataclass default of ``"section.key"`` or of a top-level ``"key"``."""
    section, _, key = field.rpartition(".")
    cls = SECTIONS[section] if section else RunConfig
    for f in dataclasses.fields(cls):
        if f.name == key:
            return f.default
    raise KeyError(field)  # a typo in this module, not user input


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def config_option(*decls: str, field: str, help: str, **attrs: Any) -> Callable[[F], F]:
    """A click option for the ``RunConfig`` field ``field``, "not given" unless passed.

    The help text ends with the dataclass default unless ``help`` already names the default.
    """
    if "default:" not in help:
        help = f"{help} [default: {_show(_default_of(field))}]"
    option = click.option(*decls, default=None, help=help, **attrs)

    def wrap(f: F) -> F:
        wrapped = option(f)
        params = getattr(wrapped, "__click_params__", [])
        CONFIG_FIELDS[params[-1].name] = field
        return wrapped  # type: ignore[no-any-return]

    return wrap


def out_dir_option(help: str) -> Callable[[F], F]:
    """The required ``-o/--out`` folder option (parameter ``out_dir``) with a command's own help."""
    return click.option(
        "-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help=help
    )


def _apply(f: F, opts: list[Callable[[F], F]]) -> F:
    for opt in reversed(opts):
        f = opt(f)
    return f


def slide_options(f: F) -> F:
    """``--mpp --target-mpp --roi --tile --halo --max-window --tissue-mask/--no-tissue-mask``."""
    return _apply(
        f,
        [
            config_option(
                "--mpp",
                field="slide.mpp",
                type=float,
                help="Level-0 pixel size in µm/px (default: from the slide metadata).",
            ),
            config_option(
                "--target-mpp",
                field="slide.target_mpp",
                type=float,
                help="Resolution the model sees, µm/px (default: level 0). Outputs stay in "
                "level-0 px.",
            ),
            config_option(
                "--roi",
                field="slide.roi_xywh_l0",
                nargs=4,
                type=int,
                metavar="X Y W H",
                help="Only this region, level-0 px (x, y, width, height) (default: whole slide).",
            ),
            config_option("--tile", field="tiling.tile_px", type=int, help="Core block side, px."),
            config_option(
                "--halo", field="tiling.halo_px", type=int, help="Context on each side, px."
            ),
            config_option(
                "--max-window",
                field="tiling.max_window_px",
                type=int,
                help="Largest window a block reads for a foreground region its halo cuts, px.",
            ),
            config_option(
                "--tissue-mask/--no-tissue-mask",
                field="tissue.enabled",
                help="Skip blocks without tissue (--no-tissue-mask processes every block).",
            ),
        ],
    )


class _ModelOption(click.Option):
    """``--model``: its help lists the registered models, looked up only when help is shown."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from pathosam_wsi.model.registry import available_models

        names = " | ".join(available_models())
        self.help = f"{names}. [default: {_default_of('model.name')}]"
        return super().get_help_record(ctx)


def model_options(f: F) -> F:
    """``--model --checkpoint --decoder ... --intensity --batchnorm``."""
    path = click.Path(dir_okay=False)
    return _apply(
        f,
        [
            config_option("--model", field="model.name", cls=_ModelOption, help="Model name."),
            config_option(
                "--checkpoint",
                field="model.checkpoint",
                type=path,
                help="Local encoder checkpoint (default: the cached download).",
            ),
            config_option(
                "--decoder",
                field="model.decoder",
                type=path,
                help="Local AIS decoder checkpoint (default: the cached download).",
            ),
            config_option(
                "--semantic-decoder",
                field="model.semantic_decoder",
                type=path,
                help="Local PanNuke semantic decoder checkpoint (default: the cached download).",
            ),
            config_option(
                "--classes/--no-classes",
                field="model.classes",
                help="Add PanNuke classes per nucleus (PathoSAM vit_b).",
            ),
            config_option("--device", field="model.device", help="auto | cpu | cuda | cuda:N."),
            config_option(
                "--precision",
                field="model.precision",
                type=click.Choice(["fp32", "tf32", "bf16", "fp16"]),
                help="Autocast precision of the model.",
            ),
            config_option(
                "--batch-size",
                field="model.batch_size",
                type=int,
                help="Blocks per model call (default: from free memory).",
            ),
            config_option(
                "--compile/--no-compile", field="model.compile", help="Try torch.compile."
            ),
            config_option(
                "--intensity",
                field="model.intensity",
                type=click.Choice(["none", "per_tile_minmax"]),
                help="Input stretch: none (as trained) or micro-sam>=1.7's.",
            ),
            config_option(
                "--batchnorm",
                field="model.batchnorm",
                type=click.Choice(["per_tile", "running"]),
                help="Decoder BatchNorm statistics: per_tile (= reference at batch 1) or running.",
            ),
        ],
    )


def watershed_options(f: F) -> F:
    """The six watershed parameters (PathoSAM's defaults)."""
    return _apply(
        f,
        [
            config_option(
                "--center-distance-thresh",
                field="watershed.center_distance_thresh",
                type=float,
                help="Seeds: centre-distance map below this.",
            ),
            config_option(
                "--boundary-distance-thresh",
                field="watershed.boundary_distance_thresh",
                type=float,
                help="Seeds: boundary-distance map below this.",
            ),
            config_option(
                "--foreground-thresh",
                field="watershed.foreground_thresh",
                type=float,
                help="Foreground probability above this.",
            ),
            config_option(
                "--foreground-smoothing",
                field="watershed.foreground_smoothing_px",
                type=float,
                help="Gaussian sigma, px.",
            ),
            config_option(
                "--distance-smoothing",
                field="watershed.distance_smoothing_px",
                type=float,
                help="Gaussian sigma, px.",
            ),
            config_option(
                "--min-size",
                field="watershed.min_size_px",
                type=int,
                help="Drop nuclei smaller than this, px.",
            ),
        ],
    )


def config_options(threads_help: str) -> Callable[[F], F]:
    """``--config``, ``--blocks-per-task`` and ``--threads`` (whose meaning differs per command)."""

    def wrap(f: F) -> F:
        return _apply(
            f,
            [
                click.option(
                    "--config",
                    "config_path",
                    type=click.Path(exists=True, dir_okay=False),
                    help="TOML file with [slide], [tiling], [tissue], [watershed], [model] "
                    "tables and blocks_per_task, threads; options given here override it.",
                ),
                config_option(
                    "--blocks-per-task",
                    field="blocks_per_task",
                    type=int,
                    help="Blocks per scheduled task (read + model + watershed together).",
                ),
                config_option("--threads", field="threads", type=int, help=threads_help),
            ],
        )

    return wrap


def given_overrides(ctx: click.Context) -> dict[str, Any]:
    """``{"section.key": value}`` for each config option given on the command line."""
    out: dict[str, Any] = {}
    for param, field in CONFIG_FIELDS.items():
        if param in ctx.params and ctx.get_parameter_source(param) in _GIVEN:
            value = ctx.params[param]
            out[field] = tuple(value) if isinstance(value, list) else value
    return out


def check_model_name(config: RunConfig) -> None:
    """Refuse an unknown model name before any slide is opened or folder made."""
    from pathosam_wsi.model.registry import available_models

    names = available_models()
    if config.model.name not in names:
        raise ConfigError(
            f"--model: unknown model {config.model.name!r}; choose one of {', '.join(names)} "
            "('pathosam-wsi models list' shows their files)"
        )


def run_config(ctx: click.Context) -> RunConfig:
    """defaults < ``--config`` TOML < options given; the model name is checked."""
    path = ctx.params.get("config_path")
    base = RunConfig.from_toml(path) if path else RunConfig()
    config = base.with_overrides(given_overrides(ctx))
    check_model_name(config)
    return config
