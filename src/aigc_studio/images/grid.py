"""An X/Y grid image with axis labels, like AUTOMATIC1111's X/Y/Z plot: the images in rows and columns,
each column headed by its X value and each row by its Y value, the axis names in the corner."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

__all__ = ["compose_grid"]

_FONT_SIZE = 16
_PAD = 8


def compose_grid(
    cells: list[Image.Image | None],
    x_labels: list[str],
    y_labels: list[str] | None = None,
    corner: str = "",
) -> Image.Image:
    """One picture of ``cells`` (row by row: len(y_labels or [""]) rows of len(x_labels) columns).

    A cell that is None (its generation failed) is drawn as a grey tile saying so, so the grid keeps
    its shape and the labels stay true."""
    rows = y_labels or [""]
    assert len(cells) == len(x_labels) * len(rows), "one cell per (x, y) pair"
    font = ImageFont.load_default(size=_FONT_SIZE)
    made = [c for c in cells if c is not None]
    width = max((c.width for c in made), default=128)
    height = max((c.height for c in made), default=128)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_width(text: str) -> int:
        return int(measure.textlength(text, font=font))

    left = max([text_width(label) for label in rows] + [text_width(corner) if y_labels else 0]) + 2 * _PAD
    left = left if y_labels else 0
    top = _FONT_SIZE + 2 * _PAD
    # A column is as wide as its widest label, so labels never run into each other over small images.
    column = max([width] + [text_width(label) + 2 * _PAD for label in x_labels])
    inset = (column - width) // 2
    grid = Image.new("RGB", (left + column * len(x_labels), top + height * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    if corner:
        draw.text((_PAD, _PAD), corner, fill="black", font=font)
    for i, label in enumerate(x_labels):
        draw.text((left + i * column + (column - text_width(label)) // 2, _PAD), label, fill="black", font=font)
    for j, label in enumerate(rows):
        draw.text((_PAD, top + j * height + (height - _FONT_SIZE) // 2), label, fill="black", font=font)
        for i in range(len(x_labels)):
            cell = cells[j * len(x_labels) + i]
            box = (left + i * column + inset, top + j * height)
            if cell is None:
                draw.rectangle((*box, box[0] + width - 1, box[1] + height - 1), fill=(160, 160, 160))
                draw.text((box[0] + _PAD, box[1] + _PAD), "failed", fill="black", font=font)
            else:
                grid.paste(cell.convert("RGB"), box)
    return grid
