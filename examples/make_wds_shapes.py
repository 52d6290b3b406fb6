"""Write suites/data/wds-shapes/: a tiny webdataset in CLIP_benchmark's hosted layout for the smoke suite.

Two shards of coloured shapes with a label (.cls) and captions (.txt), plus classnames.txt and
zeroshot_classification_templates.txt with CLIP_benchmark's {c}. Deterministic: rerunning writes
the same bytes, so the shipped files can be checked against it.
"""

import io
import tarfile
from pathlib import Path

from PIL import Image, ImageDraw

from bench.data.captions import draw_shape

OUT = Path(__file__).resolve().parent.parent / "suites" / "data" / "wds-shapes"
CLASSES = [("red", (215, 40, 40)), ("green", (40, 165, 60)), ("blue", (40, 70, 215)), ("yellow", (230, 205, 40))]
SHAPES = ("square", "circle", "triangle")


def image(rgb, shape, i) -> bytes:
    img = Image.new("RGB", (32, 32), (240, 240, 240))
    d = ImageDraw.Draw(img)
    o = 2 + i % 6
    draw_shape(d, shape, (o, o, o + 20, o + 20), rgb)
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same bytes every run
    tar.addfile(info, io.BytesIO(data))


def main(out: Path = OUT) -> None:
    OUT = out  # noqa: N806
    (OUT / "test").mkdir(parents=True, exist_ok=True)
    samples = [(c, s, i) for i, (c, s) in enumerate((c, s) for c in range(len(CLASSES)) for s in SHAPES)]
    for shard in range(2):
        with tarfile.open(OUT / "test" / f"{shard}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for c, shape, i in samples[shard::2]:
                colour, rgb = CLASSES[c]
                key = f"sample{i:04d}"
                add(tar, f"{key}.png", image(rgb, shape, i))
                add(tar, f"{key}.cls", str(c).encode())
                add(tar, f"{key}.txt", f"a {colour} {shape}\na {shape} in {colour}".encode())
    (OUT / "test" / "nshards.txt").write_text("2\n")
    (OUT / "classnames.txt").write_text("".join(f"{c}\n" for c, _ in CLASSES))
    (OUT / "zeroshot_classification_templates.txt").write_text("a photo of a {c} shape.\na drawing of something {c}.\n")
    print(f"wrote {len(samples)} samples in 2 shards to {OUT}")


if __name__ == "__main__":
    main()
