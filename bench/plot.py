"""A PNG of the figures with nothing but zlib: throughput over time, and the latency distribution.

Two small charts do not justify a plotting stack (matplotlib brings numpy, pillow and a font cache
into a bus's dev environment), so this draws lines, bars and a 5x7 pixel font on a byte canvas.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Sequence

Color = tuple[int, int, int]
BLACK, GREY, LIGHT = (30, 30, 30), (150, 150, 150), (225, 225, 225)
BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)

# 5x7 glyphs, one string of 7 rows of 5 bits each ("#" on), for the characters the labels use.
_GLYPHS = {
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    "a": "00000 00000 01110 00001 01111 10001 01111", "b": "10000 10000 10110 11001 10001 10001 11110",
    "c": "00000 00000 01110 10000 10000 10001 01110", "d": "00001 00001 01101 10011 10001 10001 01111",
    "e": "00000 00000 01110 10001 11111 10000 01110", "f": "00110 01001 01000 11100 01000 01000 01000",
    "g": "00000 01111 10001 10001 01111 00001 01110", "h": "10000 10000 10110 11001 10001 10001 10001",
    "i": "00100 00000 01100 00100 00100 00100 01110", "j": "00010 00000 00110 00010 00010 10010 01100",
    "k": "10000 10000 10010 10100 11000 10100 10010", "l": "01100 00100 00100 00100 00100 00100 01110",
    "m": "00000 00000 11010 10101 10101 10001 10001", "n": "00000 00000 10110 11001 10001 10001 10001",
    "o": "00000 00000 01110 10001 10001 10001 01110", "p": "00000 00000 11110 10001 11110 10000 10000",
    "q": "00000 00000 01101 10011 01111 00001 00001", "r": "00000 00000 10110 11001 10000 10000 10000",
    "s": "00000 00000 01110 10000 01110 00001 11110", "t": "01000 01000 11100 01000 01000 01001 00110",
    "u": "00000 00000 10001 10001 10001 10011 01101", "v": "00000 00000 10001 10001 10001 01010 00100",
    "w": "00000 00000 10001 10001 10101 10101 01010", "x": "00000 00000 10001 01010 00100 01010 10001",
    "y": "00000 00000 10001 10001 01111 00001 01110", "z": "00000 00000 11111 00010 00100 01000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000", ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000", ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00001 00010 00010 00100 01000 01000 10000", "%": "11001 11010 00010 00100 01000 01011 10011",
    "(": "00010 00100 01000 01000 01000 00100 00010", ")": "01000 00100 00010 00010 00010 00100 01000",
    "-": "00000 00000 00000 11111 00000 00000 00000", "_": "00000 00000 00000 00000 00000 00000 11111",
    "=": "00000 00000 11111 00000 11111 00000 00000", "<": "00010 00100 01000 10000 01000 00100 00010",
    ">": "01000 00100 00010 00001 00010 00100 01000", "+": "00000 00100 00100 11111 00100 00100 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, min(y0, y1)), min(self.height, max(y0, y1) + 1)):
            left, right = max(0, min(x0, x1)), min(self.width - 1, max(x0, x1))
            if left <= right:
                i = (y * self.width + left) * 3
                self.pixels[i:i + (right - left + 1) * 3] = bytes(color) * (right - left + 1)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.rect(x0, y0, x0 + width - 1, y0 + width - 1, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> int:
        """Draw `text` with its top-left corner at (x, y); returns the x after it."""
        for char in text.lower():
            rows = _GLYPHS.get(char, _GLYPHS["?"]).split()
            for r, bits in enumerate(rows):
                for c, bit in enumerate(bits):
                    if bit == "1":
                        left, top = x + c * scale, y + r * scale
                        self.rect(left, top, left + scale - 1, top + scale - 1, color)
            x += 6 * scale
        return x

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                       for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        return b"\x89PNG\r\n\x1a\n" + body


def _nice(top: float) -> float:
    """A round axis maximum at or above `top`."""
    if top <= 0:
        return 1.0
    step = 10 ** len(str(int(top))) / 10
    for mult in (1, 2, 2.5, 5, 10):
        if step * mult >= top:
            return step * mult
    return step * 10


def _label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


class Panel:
    """A chart area inside the canvas with linear axes."""

    def __init__(self, canvas: Canvas, box: tuple[int, int, int, int], x_max: float, y_max: float,
                 title: str, x_name: str, y_name: str) -> None:
        self.c, (self.x0, self.y0, self.x1, self.y1) = canvas, box
        self.x_max, self.y_max = _nice(x_max), _nice(y_max)
        canvas.text(self.x0, self.y0 - 30, title, BLACK, 2)
        for i in range(6):
            y = self.y1 - (self.y1 - self.y0) * i // 5
            canvas.line(self.x0, y, self.x1, y, LIGHT)
            canvas.text(self.x0 - 8 - 6 * len(_label(self.y_max * i / 5)), y - 3, _label(self.y_max * i / 5), GREY)
            x = self.x0 + (self.x1 - self.x0) * i // 5
            canvas.text(x - 3 * len(_label(self.x_max * i / 5)), self.y1 + 8, _label(self.x_max * i / 5), GREY)
        canvas.line(self.x0, self.y1, self.x1, self.y1, BLACK)
        canvas.line(self.x0, self.y0, self.x0, self.y1, BLACK)
        canvas.text((self.x0 + self.x1) // 2 - 3 * len(x_name), self.y1 + 22, x_name, BLACK)
        canvas.text(self.x0 - 60, self.y0 - 12, y_name, BLACK)

    def point(self, x: float, y: float) -> tuple[int, int]:
        px = self.x0 + round((self.x1 - self.x0) * min(x, self.x_max) / self.x_max)
        py = self.y1 - round((self.y1 - self.y0) * min(max(y, 0.0), self.y_max) / self.y_max)
        return px, py

    def series(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            self.c.line(*self.point(ax, ay), *self.point(bx, by), color, 2)

    def bars(self, edges: Sequence[float], counts: Sequence[int], color: Color) -> None:
        for left, right, n in zip(edges, edges[1:], counts, strict=False):
            x0, y0 = self.point(left, n)
            x1, _ = self.point(right, 0)
            self.c.rect(x0 + 1, y0, max(x0 + 1, x1 - 1), self.y1 - 1, color)

    def vline(self, x: float, color: Color, label: str, row: int = 0) -> None:
        px, _ = self.point(x, 0)
        self.c.line(px, self.y0, px, self.y1, color)
        self.c.text(px + 4 if px < self.x1 - 150 else px - 6 * len(label) - 4, self.y0 + 4 + 12 * row, label, color)

    def legend(self, items: Sequence[tuple[str, Color]]) -> None:
        y = self.y0 + 6
        for name, color in items:
            self.c.rect(self.x1 - 250, y, self.x1 - 236, y + 6, color)
            self.c.text(self.x1 - 230, y, name, BLACK)
            y += 14


def rates(samples: Sequence[tuple[float, float]], window: float = 1.0) -> list[tuple[float, float]]:
    """(time, cumulative count) samples to (time, events/s) over windows of at least `window` seconds
    (offsets are committed once a second, so finer steps would only show the commits)."""
    out: list[tuple[float, float]] = []
    if not samples:
        return out
    t0, n0 = samples[0]
    for t1, n1 in samples[1:]:
        if t1 - t0 >= window:
            out.append((t1, (n1 - n0) / (t1 - t0)))
            t0, n0 = t1, n1
    return out


def draw(throughput: dict[str, list[tuple[float, float]]], latencies_ms: Sequence[float],
         percentiles: dict[str, float | None], subtitle: str) -> bytes:
    canvas = Canvas(960, 760)
    canvas.text(20, 10, subtitle, GREY)
    colors = [BLUE, ORANGE, GREEN, RED]
    x_max = max((t for pts in throughput.values() for t, _ in pts), default=1.0)
    y_max = max((r for pts in throughput.values() for _, r in pts), default=1.0)
    top = Panel(canvas, (110, 70, 930, 350), x_max, y_max, "throughput over time", "seconds", "events/s")
    for points, color in zip(throughput.values(), colors, strict=False):
        top.series(points, color)
    top.legend([(name, color) for name, color in zip(throughput, colors, strict=False)])
    values = sorted(latencies_ms)
    upper = values[min(len(values) - 1, int(len(values) * 0.999))] * 1.1 if values else 1.0
    edges = [upper * i / 50 for i in range(51)]
    counts = [0] * 50
    for v in values:
        counts[min(49, int(v / upper * 50))] += 1
    bottom = Panel(canvas, (110, 450, 930, 700), upper, max(counts, default=1), "latency: publish to unit topic",
                   "milliseconds", "revisions")
    bottom.bars(edges, counts, BLUE)
    for row, ((name, value), color) in enumerate(zip(percentiles.items(), (GREEN, ORANGE, RED), strict=False)):
        if value is not None:
            bottom.vline(value, color, f"{name} {value:g} ms", row)
    return canvas.png()
