"""The capability registry: what a model can be asked for, the inputs it takes, and the adapter method.

Tasks name capabilities they need; adapters name capabilities they offer and implement the
methods; the broker serves `ctx.outputs(capability, inputs, **args)` by the input kind. Both
sides are checked against this registry when they register.

Input kinds (how the broker batches and calls the method):
  images      an ImageSplit; method(uint8 batch [B,3,H,W], **args) -> tensor [B, ...]
  detections  (DetectionSplit, image ids); method(images, ids, **args) -> per-image dicts
  texts       list[str]; method(batch) -> tensor [B, D]
  pairs       list[(a, b)]; method(task, a_batch, b_batch) -> (array [B, C], label names)
  choices     list[(context, continuation)]; method(contexts, continuations) -> array [B]
  dense       (ImageSplit, label sizes [(H, W)], bench.dense.Inference); method(uint8 [B,3,h,w], **args)
              -> logits [B, C, h', w']; the broker runs the inference mode and returns class maps [H, W]
  clips       (VideoSplit, bench.data.video.Views); method(uint8 [B,3,T,H,W], **args) -> [B, K] per view;
              the broker returns ([N, views, K] with NaN rows for unreadable videos, {index: error}, short flags)
  items       list of argument tuples; method(*item, **args) -> one result per item
  none        no inputs; method(**args) -> one result
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.registry import Registry

INPUT_KINDS = ("images", "detections", "dense", "clips", "texts", "pairs", "choices", "items", "none")


@dataclass(frozen=True)
class Capability:
    name: str
    inputs: str
    method: str
    doc: str = ""


CAPABILITIES: Registry[Capability] = Registry("capability")


def register_capability(name: str, inputs: str, method: str, doc: str = "") -> Capability:
    if inputs not in INPUT_KINDS:
        raise ValueError(f"capability '{name}': input kind '{inputs}' is not one of {', '.join(INPUT_KINDS)}")
    return CAPABILITIES.register(name)(Capability(name, inputs, method, doc))


for _args in (
    ("image_features", "images", "image_features", "pooled penultimate features [N, D]"),
    ("image_logits", "images", "image_logits", "classifier logits [N, C]"),
    ("odin_scores", "images", "odin_scores", "ODIN's perturbed, temperature-scaled max softmax [N] (needs input_gradients)"),
    ("input_gradients", "none", "logits_with_grad", "logits differentiable in the input"),
    ("linear_head", "none", "linear_head", "the classifier as one linear layer on image_features: (W, b)"),
    ("text_features", "texts", "text_features", "text embeddings [N, D]"),
    ("text_pair_logits", "pairs", "pair_logits", "a per-task sequence classifier on text pairs: ([N, C], id2label names)"),
    ("text_choice_logprobs", "choices", "choice_logprobs", "sum of the continuation's token log-probabilities given the context [N]"),
    ("detections", "detections", "detections", "per-image boxes, scores, labels (and masks) over a vocabulary"),
    ("patch_features", "images", "patch_features", "the last stage's feature map [N, D, h, w] (a ViT's patch tokens on their grid)"),
    ("dense_embeddings", "images", "dense_embeddings", "patch embeddings [N, D, h, w] in the image-text space (MaskCLIP), scored against class-name embeddings"),
    ("seg_logits", "dense", "seg_logits", "per-pixel class logits [B, C, h, w] at any stride; served as class maps at the label's size"),
    ("video_logits", "clips", "video_logits", "video classifier logits [N, views, K] of clips [B, 3, T, H, W]"),
    ("video_features", "clips", "video_features", "video embeddings [N, views, D] (an image-text model: frame embeddings averaged over time)"),
    ("region_scores", "items", "region_scores", "class probabilities of given boxes on one image"),
    ("predictions", "none", "predictions_file", "a results file or folder made elsewhere, per task"),
    ("nlq_from_features", "items", "nlq_windows", "Ego4D NLQ windows from per-clip features: (features, fps, query, duration)"),
    ("nlq_from_frames", "items", "nlq_windows_from_frames", "zero-shot Ego4D NLQ from sampled frames: (paths, fps, query, duration)"),
    ("mq_from_features", "items", "mq_moments", "Ego4D MQ moments from per-clip features: (features, fps, duration, classes)"),
):
    register_capability(*_args)
