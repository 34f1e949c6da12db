"""`aigc image`, `img2img`, `inpaint`, `edit`: drawing from the terminal, with a progress bar (`aigc inspect`
reads the parameters back: cli/inspect.py)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import click
from pydantic import ValidationError

from ..contracts import HIRES_FIELDS, INPAINT_FIELDS, ImageRequest, Mode
from ..errors import StudioError, validation_message
from ..storage.files import write_atomic
from .options import field_option

# CLI flag names where A1111 users expect short ones; every other field keeps its own name.
FLAGS = {
    "negative_prompt": ("-n", "--negative"),
    "sampler_name": ("--sampler",),
    "cfg_scale": ("--cfg",),
    "batch_size": ("--batch",),
    "n_iter": ("--n-iter", "--batch-count"),
    "denoising_strength": ("--denoise", "--denoising-strength"),
    "image_cfg_scale": ("--image-cfg",),
    "inpainting_fill": ("--fill",),
    "model": ("-m", "--model"),
    "styles": ("--style",),
    "dynamic_seed": ("--dynamic-seed",),
    "s_min_uncond": ("--ngms", "--s-min-uncond"),
}
# Which fields each command offers (the rest do not apply to it).
COMMON = [
    "negative_prompt",
    "steps",
    "sampler_name",
    "scheduler",
    "cfg_scale",
    "seed",
    "subseed",
    "subseed_strength",
    "width",
    "height",
    "batch_size",
    "n_iter",
    "clip_skip",
    "eta",
    "model",
    "styles",
    "dynamic_seed",
]
NGMS = ["s_min_uncond", "s_min_uncond_all"]  # not for edits, which A1111 never skips
PER_MODE: dict[Mode, list[str]] = {
    "txt2img": [*COMMON, "tiling", *NGMS, *HIRES_FIELDS, "denoising_strength"],
    "img2img": [*COMMON, "tiling", *NGMS, "denoising_strength", "resize_mode"],
    "inpaint": [*COMMON, "tiling", *NGMS, "denoising_strength", "resize_mode", *INPAINT_FIELDS],
    "edit": [*COMMON, "tiling", "image_cfg_scale", "resize_mode"],
}
# Help added to a field's own description where a command uses it in its own way.
HELP = {("txt2img", "denoising_strength"): " With --enable-hr: how much its second pass changes."}


def _request_options(mode: Mode) -> Callable:
    """One option per ImageRequest field, with the limits and help declared there; defaults stay unset
    so that only what the user typed reaches the request."""

    def decorate(fn: Callable) -> Callable:
        for name in reversed(PER_MODE[mode]):
            default = ImageRequest.model_fields[name].default
            shown = HELP.get((mode, name), "") + ("" if default in (None, "") else f" (default {default})")
            fn = field_option(ImageRequest, name, *FLAGS.get(name, ()), suffix=shown)(fn)
        fn = click.option(
            "--dynamic",
            "dynamic_prompts",
            type=click.Choice(["random", "combinatorial"]),
            default=None,
            is_flag=False,
            flag_value="random",
            help="Dynamic prompts: {a|b} choices and __wildcards__ (AIGC_HOME/wildcards) drawn per image: random "
            "(from the seed; the default with --dynamic alone) or combinatorial (an image per combination). "
            "Without it braces are literal, as in A1111.",
        )(fn)
        fn = click.option("--size", help="WIDTHxHEIGHT, e.g. 512x768 (sets --width and --height).")(fn)
        fn = click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Also save to this file (.png, .jpg, .webp; FILE-2.png… for more images).",
        )(fn)
        return fn

    return decorate


def _build_request(prompt: str, kwargs: dict, default_size: tuple[int, int] | None = None) -> ImageRequest:
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in ImageRequest.model_fields}
    fields = {k: v for k, v in fields.items() if v is not None and v != ()}
    size = kwargs.pop("size", None)
    if size:
        m = re.fullmatch(r"(\d+)[xX×](\d+)", size.strip())
        if not m:
            raise click.BadParameter(f"expected WIDTHxHEIGHT like 512x512, got {size!r}", param_hint="--size")
        fields["width"], fields["height"] = int(m[1]), int(m[2])
    if default_size:
        fields.setdefault("width", default_size[0])
        fields.setdefault("height", default_size[1])
    try:
        return ImageRequest(prompt=prompt, **fields)
    except ValidationError as exc:
        raise click.UsageError(validation_message(exc.errors())[0]) from None


def _load(path: Path, what: str):
    from ..config import load_config
    from ..services.images import open_image

    return open_image(path.read_bytes(), what, int(load_config().max_image_megapixels))


def _fit(size: tuple[int, int]) -> tuple[int, int]:
    """An input image's size, rounded down to a multiple of 8 and kept within 64..2048."""
    return tuple(max(64, min(2048, s - s % 8)) for s in size)  # type: ignore[return-value]


_OUTPUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def _run(mode: Mode, request: ImageRequest, output: Path | None, **images) -> None:
    from ..cli.main import _studio

    fmt = None
    if output is not None:
        fmt = _OUTPUT_FORMATS.get(output.suffix.lower())
        if fmt is None:
            raise click.BadParameter(
                f"the file must end in .png, .jpg, .jpeg or .webp, got {output.name!r}", param_hint="--output"
            )
    studio = _studio()
    try:
        job = studio.images.submit(request, mode, source="cli", **images)
        total = job.steps * job.batches  # both passes with hires fix
        label = f"{mode} {job.model}"
        with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True, show_pos=True) as bar:
            done, phase = 0, None
            try:
                while not job.done.wait(0.1):
                    if job.phase != phase and job.phase not in (None, "", "labeling"):
                        click.echo(f"\n{job.phase[:1].upper()}{job.phase[1:]}…", err=True)  # before the first step
                    phase = job.phase
                    now = job.batch * job.steps + job.step if job.steps else 0
                    bar.update(now - done)
                    done = now
            except KeyboardInterrupt:
                studio.jobs.interrupt(job.id)
                job.done.wait(30)
            bar.update(total - done)
        result = job.wait()
        if result.interrupted:
            click.secho(f"interrupted: {len(result.images)} image(s) finished", fg="yellow", err=True)
        for i, generated in enumerate(result.images):
            click.echo(str(generated.path))
            if output:
                target = output if i == 0 else output.with_name(f"{output.stem}-{i + 1}{output.suffix}")
                if fmt == "png":  # the very file the studio wrote, labels and signature included
                    write_atomic(target, generated.data)
                else:  # the labeled pixels, with the same labels written the way this format holds them
                    write_atomic(
                        target,
                        studio.labeler.encode(
                            generated.image,
                            dict(generated.labels),
                            produce_id=generated.id,
                            infotext=generated.infotext,
                            fmt=fmt,
                            source=images.get("init_image"),
                            title=target.name,
                        ),
                    )
                click.echo(str(target))
        if len({g.prompt for g in result.images}) > 1:
            for generated in result.images:
                click.secho(f"{generated.seed}: {generated.prompt}", err=True)
        seeds = ", ".join(str(g.seed) for g in result.images)
        click.secho(f"seed {seeds}; model {result.model} [{result.model_hash or '-'}]", fg="cyan", err=True)
    except StudioError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        studio.close()


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("prompt")
    @_request_options("txt2img")
    def image(prompt, output, **kwargs):
        """Draw an image from PROMPT. (word:1.2) raises a word's weight, BREAK starts a new 75-token chunk; the
        same seed gives the same image. --enable-hr upscales and redraws (hires fix); --tiling makes it seamless."""
        _run("txt2img", _build_request(prompt, kwargs), output)

    @cli.command()
    @click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.argument("prompt")
    @_request_options("img2img")
    def img2img(image, prompt, output, **kwargs):
        """Redraw IMAGE following PROMPT; --denoise sets how much changes (0: nothing, 1: everything)."""
        init = _load(image, "image")
        _run("img2img", _build_request(prompt, kwargs, _fit(init.size)), output, init_image=init)

    @cli.command()
    @click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.argument("prompt")
    @click.option(
        "--mask",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Mask image of the same size: white where IMAGE should change.",
    )
    @_request_options("inpaint")
    def inpaint(image, prompt, mask, output, **kwargs):
        """Repaint the white part of MASK in IMAGE following PROMPT (--inpainting-mask-invert 1: the black part;
        --inpaint-full-res: only the masked region, at full resolution)."""
        init = _load(image, "image")
        _run(
            "inpaint",
            _build_request(prompt, kwargs, _fit(init.size)),
            output,
            init_image=init,
            mask=_load(mask, "mask"),
        )

    @cli.command()
    @click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.argument("instruction")
    @_request_options("edit")
    def edit(image, instruction, output, **kwargs):
        """Edit IMAGE by INSTRUCTION ("make it snow", "remove the people") with an InstructPix2Pix model."""
        init = _load(image, "image")
        _run("edit", _build_request(instruction, kwargs, _fit(init.size)), output, init_image=init)
