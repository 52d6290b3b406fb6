"""An example segmentation model for the `python` adapter's `seg_logits`: nearest class colour.

    models:
      - name: colour-segnet
        adapter: python
        factory: examples.colour_segnet:build
        python_path: [..]
        capabilities: [seg_logits]
        preprocess: {mean: [0.0, 0.0, 0.0], std: [1.0, 1.0, 1.0]}

`forward(x)` takes normalised images [B, 3, H, W] and returns logits [B, C, H/2, W/2] (a stride
of 2, so the harness's upsampling runs): each pixel scores minus its squared distance to each
class's colour. The colours are those of bench's generated `seg_shapes` set; there are no
learned weights, so its numbers are the same on every machine.
"""

import torch
from torch import nn

COLOURS = [(90, 90, 90), (220, 40, 40), (40, 200, 60), (50, 70, 220), (230, 210, 40)]  # background, red, green, blue, yellow


class ColourSegNet(nn.Module):
    def __init__(self, colours=COLOURS, temperature: float = 0.05):
        super().__init__()
        self.register_buffer("colours", torch.tensor(colours, dtype=torch.float32) / 255.0)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(x, 2, ceil_mode=True)
        d = ((x[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)
        return -d / self.temperature


def build(**kwargs) -> nn.Module:
    return ColourSegNet(**kwargs).eval()
