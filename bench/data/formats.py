"""What a task's `dataset:` key accepts, picked by `format`, and the `dataset` name its rows carry.

A new format is a spec class in its own reader module, added to one of these unions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Union

from pydantic import Field

from bench.data.captions import CaptionListSpec, CocoCaptionsSpec, KarpathySpec, SyntheticCaptionsSpec
from bench.data.hf import HfCaptionsSpec, HfImagesSpec
from bench.data.images import DigitsSpec, ImageFolderSpec, ImageListSpec, NoiseSpec
from bench.data.segmentation import Ade20kSpec, Ade847Spec, CityscapesSpec, CocoStuffSpec, PascalContextSpec, SegFolderSpec, SegShapesSpec
from bench.data.video import KineticsSpec, MsrvttSpec, SplitFileSpec, Sthv2Spec, VideoCaptionsSpec, VideoCaptionsSyntheticSpec, VideoListSpec, VideoSyntheticSpec
from bench.data.wds import WdsCaptionsSpec, WdsImagesSpec

# labelled images: classification, OOD, soups' held-out sets
ImageDatasetSpec = Annotated[Union[ImageFolderSpec, ImageListSpec, DigitsSpec, NoiseSpec, WdsImagesSpec, HfImagesSpec], Field(discriminator="format")]
# images with captions: retrieval
CaptionDatasetSpec = Annotated[
    Union[CocoCaptionsSpec, KarpathySpec, CaptionListSpec, SyntheticCaptionsSpec, WdsCaptionsSpec, HfCaptionsSpec], Field(discriminator="format")
]

# images with label maps: semantic segmentation (the rows' dataset is the SegSplit's)
SegDatasetSpec = Annotated[
    Union[SegFolderSpec, Ade20kSpec, Ade847Spec, CityscapesSpec, PascalContextSpec, CocoStuffSpec, SegShapesSpec], Field(discriminator="format")
]

# labelled videos: video classification (the rows' dataset is the VideoSplit's)
VideoDatasetSpec = Annotated[Union[VideoListSpec, KineticsSpec, Sthv2Spec, SplitFileSpec, VideoSyntheticSpec], Field(discriminator="format")]
# videos with captions: video-text retrieval
VideoCaptionDatasetSpec = Annotated[Union[MsrvttSpec, VideoCaptionsSpec, VideoCaptionsSyntheticSpec], Field(discriminator="format")]


def dataset_name(spec) -> str:
    """The `dataset` value of result rows: a folder, file or hub name, or the generator's name."""
    fmt = spec.format
    if fmt == "sklearn_digits":
        return "sklearn_digits"
    if fmt == "generated_noise":
        return f"{spec.kind}_noise"
    if fmt == "captions_synthetic":
        return "synthetic_captions"
    if fmt == "wds":
        return Path(spec.root.rstrip("/")).name if spec.root else Path(spec.shards[0]).parent.name or Path(spec.shards[0]).stem
    if fmt == "hf":
        return spec.path.rstrip("/").split("/")[-1].rsplit(".", 1)[0]
    if fmt == "imagefolder":
        return spec.root.rstrip("/").split("/")[-1]
    path = spec.annotations if fmt == "coco_captions" else spec.file
    return Path(path).name.rsplit(".", 1)[0]
