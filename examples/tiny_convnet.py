"""An example backbone from outside timm, plugged in through the `python` adapter.

    models:
      - name: tiny-convnet
        adapter: python
        factory: examples.tiny_convnet:build
        kwargs: {num_classes: 10, width: 32}
        capabilities: [image_logits, image_features, linear_head, input_gradients]
        preprocess: {input_size: 32, crop_pct: 1.0, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}

The adapter calls `forward(x)` for image_logits and `forward_features(x)` for image_features.
"""

import torch
from torch import nn


class TinyConvNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x).mean(dim=(2, 3))  # pooled [B, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.head  # lets OOD methods that reshape features (ReAct, ASH, ViM) recompute logits


def build(num_classes: int = 10, width: int = 32) -> nn.Module:
    return TinyConvNet(num_classes, width)
