"""An example video model for the `python` adapter's `video_logits`: which way the bright square moves.

    models:
      - name: motion-net
        adapter: python
        factory: examples.motion_net:build
        python_path: [..]
        capabilities: [video_logits]
        preprocess: {input_size: 48, crop_pct: 0.857, mean: [0.0, 0.0, 0.0], std: [1.0, 1.0, 1.0]}

`forward(x)` takes clips [B, 3, T, H, W] in [0, 1] and returns logits [B, 4] for bench's generated
`video_synthetic` classes (moving right, left, down, up): the centroid of the bright pixels in the
last frames minus the first. No learned weights, so its numbers are the same on every machine.
"""

import torch
from torch import nn


class MotionNet(nn.Module):
    def __init__(self, threshold: float = 0.4, gain: float = 4.0):
        super().__init__()
        self.threshold, self.gain = threshold, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (x.mean(1) - self.threshold).clamp_min(0)  # [B, T, H, W]: the square's pixels
        b, t, h, wd = w.shape
        ys = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1) / h
        xs = torch.arange(wd, dtype=x.dtype, device=x.device).view(1, 1, 1, wd) / wd
        mass = w.sum((2, 3)).clamp_min(1e-6)
        cx, cy = (w * xs).sum((2, 3)) / mass, (w * ys).sum((2, 3)) / mass  # [B, T]
        half = max(t // 2, 1)
        dx = cx[:, -half:].mean(1) - cx[:, :half].mean(1)
        dy = cy[:, -half:].mean(1) - cy[:, :half].mean(1)
        return self.gain * torch.stack([dx, -dx, dy, -dy], 1) / 0.1


def build(**kwargs) -> nn.Module:
    return MotionNet(**kwargs).eval()
