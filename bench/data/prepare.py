"""`bench data prepare NAME --root DIR`: fetch one catalogue dataset with its own loader
(torchvision) and write it as the ImageFolder bench reads, with its class names.

    DIR/<name>/<split>/<class index, zero-padded>/<n>.png    DIR/<name>/classnames.txt

Zero-padded class folders sort the same naturally and lexically, so no class order has to be
chosen. Datasets that cannot be downloaded (ImageNet, FER2013) print where to put the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from bench.errors import DataError
from bench.registry import did_you_mean


@dataclass(frozen=True)
class Recipe:
    loader: str  # a torchvision.datasets class
    test: dict  # its keyword arguments for the test split
    train: Optional[dict] = None
    manual: str = ""  # what to download by hand, where the loader cannot
    kwargs: dict = field(default_factory=dict)


RECIPES = {
    "cifar10": Recipe("CIFAR10", {"train": False}, {"train": True}),
    "cifar100": Recipe("CIFAR100", {"train": False}, {"train": True}),
    "stl10": Recipe("STL10", {"split": "test"}, {"split": "train"}),
    "mnist": Recipe("MNIST", {"train": False}, {"train": True}),
    "svhn": Recipe("SVHN", {"split": "test"}, {"split": "train"}),
    "food101": Recipe("Food101", {"split": "test"}, {"split": "train"}),
    "dtd": Recipe("DTD", {"split": "test"}, {"split": "train"}),
    "pets": Recipe("OxfordIIITPet", {"split": "test"}, {"split": "trainval"}),
    "flowers": Recipe("Flowers102", {"split": "test"}, {"split": "train"}),
    "gtsrb": Recipe("GTSRB", {"split": "test"}, {"split": "train"}),
    "country211": Recipe("Country211", {"split": "test"}, {"split": "train"}),
    "fgvc_aircraft": Recipe("FGVCAircraft", {"split": "test"}, {"split": "trainval"}),
    "cars": Recipe("StanfordCars", {"split": "test"}, {"split": "train"}),
    "pcam": Recipe("PCAM", {"split": "test"}, {"split": "train"}),
    "renderedsst2": Recipe("RenderedSST2", {"split": "test"}, {"split": "train"}),
    "eurosat": Recipe("EuroSAT", {}),
    "sun397": Recipe("SUN397", {}),
    "caltech101": Recipe("Caltech101", {"target_type": "category"}),
    "fer2013": Recipe("FER2013", {"split": "test"}, {"split": "train"}, manual="fer2013.csv from the Kaggle challenge into ROOT/raw/fer2013/"),
    "imagenet1k": Recipe("ImageNet", {"split": "val"}, {"split": "train"}, manual="ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz (image-net.org, after sign-up) into ROOT/raw/"),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise DataError(f"no prepare recipe for '{name}'{did_you_mean(name, RECIPES)} (recipes: {', '.join(sorted(RECIPES))})")
    return RECIPES[name]


def plan(name: str, root: Path, split: str) -> list[str]:
    """What prepare would fetch and write, in lines a user can act on offline."""
    r = recipe(name)
    args = r.test if split == "test" else r.train
    if args is None:
        raise DataError(f"'{name}' has no separate {split} split in torchvision; prepare its test split")
    call = ", ".join([f"root='{root / 'raw'}'"] + [f"{k}={v!r}" for k, v in args.items()] + ([] if r.manual else ["download=True"]))
    lines = [f"fetch: torchvision.datasets.{r.loader}({call})"]
    if r.manual:
        lines.append(f"by hand first: {r.manual.replace('ROOT', str(root))}")
    lines += [f"write: {root / name / split}/<class>/<n>.png and {root / name / 'classnames.txt'}", f"then: {suite_snippet(name, root, split)}"]
    return lines


def suite_snippet(name: str, root: Path, split: str) -> str:
    return f"dataset: {{format: imagefolder, root: {root / name}, split: {split}, class_names: {root / name / 'classnames.txt'}}}, zero_shot: {{catalogue: {name}}}"


def load(name: str, root: Path, split: str):
    """The torchvision dataset, downloading where its loader can."""
    import torchvision.datasets as tvd

    r = recipe(name)
    args = dict(r.test if split == "test" else r.train or {})
    if not r.manual:
        args["download"] = True
    try:
        return getattr(tvd, r.loader)(root=str(root / "raw"), **args)
    except Exception as e:  # no network, a moved URL, files not placed by hand
        raise DataError(f"{name}: torchvision.datasets.{r.loader} could not load it ({str(e).splitlines()[0] if str(e) else type(e).__name__}); run with --dry-run to see what to fetch and where") from None


def class_names(ds) -> list[str]:
    names = getattr(ds, "classes", None) or getattr(ds, "categories", None)
    if not names:
        raise DataError(f"{type(ds).__name__}: the dataset names no classes")
    return [str(n) for n in names]


def write_imagefolder(ds, names: list[str], out: Path, advance: Callable[[int], None] = lambda n: None) -> int:
    """Every (image, label) of `ds` as out/<label, zero-padded>/<n>.png; returns the count."""
    width = len(str(len(names) - 1))
    for c in range(len(names)):
        (out / f"{c:0{width}d}").mkdir(parents=True, exist_ok=True)
    for n in range(len(ds)):
        img, label = ds[n]
        img.convert("RGB").save(out / f"{int(label):0{width}d}" / f"{n:07d}.png")
        advance(1)
    return len(ds)
