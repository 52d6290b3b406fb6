"""Example Ego4D heads for the `video_heads` adapter (random init in the smoke suite; load a
checkpoint of your own trained head with `checkpoint: PATH`).

    nlq_head: {factory: examples.ego4d_heads:nlq_head, kwargs: {video_dim: 32, text_dim: 384}}
    mq_head:  {factory: examples.ego4d_heads:mq_head, kwargs: {video_dim: 32, num_classes: 4}}
"""

import torch
from torch import nn


class NlqHead(nn.Module):
    """Query-conditioned start/end scoring, VSLNet-style in miniature: [1, T, D] × [1, Dq] → [1, T, 2]."""

    def __init__(self, video_dim: int, text_dim: int, hidden: int = 64):
        super().__init__()
        self.v = nn.Linear(video_dim, hidden)
        self.q = nn.Linear(text_dim, hidden)
        self.out = nn.Conv1d(hidden, 2, kernel_size=3, padding=1)

    def forward(self, video: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.v(video) * self.q(query)[:, None, :])
        return self.out(h.transpose(1, 2)).transpose(1, 2)


class MqHead(nn.Module):
    """Per-step class probabilities: [1, T, D] → [1, T, C]."""

    def __init__(self, video_dim: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(video_dim, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, num_classes, 3, padding=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(video.transpose(1, 2)).transpose(1, 2))


def nlq_head(video_dim: int = 32, text_dim: int = 384):
    return NlqHead(video_dim, text_dim)


def mq_head(video_dim: int = 32, num_classes: int = 4):
    return MqHead(video_dim, num_classes)
