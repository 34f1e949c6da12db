"""``aigc inspect FILE``: every AI label and piece of provenance in a file, read back and checked."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import load_config
from ..errors import StudioError

UNREADABLE = 2  # the exit status for a file inspect cannot read (as for a usage error)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
    @click.option(
        "--infotext", "only", flag_value="infotext", help="Print only the A1111 parameters, as A1111 writes them."
    )
    @click.option(
        "--fields", "only", flag_value="fields", help="Print only the A1111 parameters as request fields (JSON)."
    )
    def inspect(file: Path, as_json: bool, only: str | None) -> None:
        """Report the labels in FILE: the verdict first, then the A1111 parameters, the TC260 AIGC label
        and whether its integrity data still matches, the IPTC source type, C2PA credentials (valid,
        trusted, invalid, with the reason), the invisible watermark and the gallery item it points to,
        and the NSFW score. FILE is a PNG, JPEG or WebP image or a .md, .html, .txt or .docx file.

        Exit status 0 when the file was read (whatever it carries); 2 when it cannot be read; with
        --infotext or --fields, 1 when the image carries no A1111 parameters."""
        from ..studio import Studio

        try:
            data = file.read_bytes()
        except OSError as exc:
            click.echo(f"Error: cannot read {file}: {exc.strerror or exc}", err=True)
            raise SystemExit(UNREADABLE) from None
        studio = Studio(load_config())
        try:
            if only:
                _print_parameters(studio.inspector.parameters(data, file.name), only, file)
                return
            report = studio.inspector.inspect(data, file.name)
        except StudioError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            raise SystemExit(UNREADABLE) from None
        finally:
            studio.close()
        if as_json:
            click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        else:
            from ..services.inspect import summary

            click.echo(summary(report))


def _print_parameters(section: dict, only: str, file: Path) -> None:
    if not section["found"]:
        raise click.ClickException(f"{file} carries no generation parameters")
    if only == "infotext":
        click.echo(section["infotext"])
    elif section["request_fields"] is None:
        raise click.ClickException(f"{file}: {section['request_fields_error']}")
    else:
        click.echo(json.dumps(section["request_fields"], ensure_ascii=False, indent=2))
