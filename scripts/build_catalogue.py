"""Build bench/catalogue/ (package data) from the packages that publish the zero-shot prompts.

Sources, all installed from PyPI (licences in bench/catalogue/SOURCES.md):
- clip-benchmark 1.6.2 (MIT): en_zeroshot_classification_templates.json, en_classnames.json,
  cupl_prompts.json — the templates ({c} marks the class), class names and CuPL prompts it evaluates with;
- open_clip (MIT): IMAGENET_CLASSNAMES and OPENAI_IMAGENET_TEMPLATES;
- timm (Apache-2.0): imagenet_a_indices.txt, imagenet_r_indices.txt (ImageNet-A/R's 200 classes in the 1k order).

Run: pip install clip-benchmark==1.6.2 && python scripts/build_catalogue.py
"""

import gzip
import json
from importlib import resources
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bench" / "catalogue"
SKIP = {"dummy", "voc2007_multilabel"}  # a test entry; multi-label needs mAP, not top-1
# ImageNet variants CLIP_benchmark scores with the 1k names and templates
VARIANTS = {"imagenetv2": None, "imagenet_sketch": None, "imagenet-a": "imagenet_a_indices.txt", "imagenet-r": "imagenet_r_indices.txt"}


def _json(pkg: str, name: str):
    return json.loads(resources.files(pkg).joinpath(name).read_text())


def main() -> None:
    import timm
    from open_clip import zero_shot_metadata as z

    templates = _json("clip_benchmark.datasets", "en_zeroshot_classification_templates.json")
    names = _json("clip_benchmark.datasets", "en_classnames.json")
    cat = {}
    for ds, temps in sorted(templates.items()):
        if ds in SKIP:
            continue
        cat[ds] = {"templates": temps, "classnames": names.get(ds), "source": "clip_benchmark 1.6.2"}
    assert cat["imagenet1k"]["classnames"] == list(z.IMAGENET_CLASSNAMES), "clip_benchmark's and open_clip's ImageNet names differ"
    info = Path(timm.__file__).parent / "data" / "_info"
    for ds, indices in VARIANTS.items():
        entry = {"templates": cat["imagenet1k"]["templates"], "classnames": cat["imagenet1k"]["classnames"], "source": "clip_benchmark 1.6.2 (imagenet1k)"}
        if indices:
            idx = [int(x) for x in (info / indices).read_text().split()]
            entry |= {"classnames": [entry["classnames"][i] for i in idx], "label_map": idx, "source": entry["source"] + f"; timm {indices}"}
        cat[ds] = entry
    OUT.mkdir(exist_ok=True)
    (OUT / "catalogue.json").write_text(json.dumps(cat, indent=1, ensure_ascii=False) + "\n")
    cupl = _json("clip_benchmark.datasets", "cupl_prompts.json")
    # 150k prompts are 8 MB as text; mtime 0 keeps the file the same on every rebuild
    with open(OUT / "cupl.json.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps(cupl, ensure_ascii=False).encode())
    print(f"wrote {len(cat)} datasets and CuPL prompts for {', '.join(cupl)} to {OUT}")


if __name__ == "__main__":
    main()
