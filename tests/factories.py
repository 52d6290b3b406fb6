"""Tiny models for tests, loaded through the `python` adapter."""

from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes: int = 3, nan: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, num_classes)
        self.nan = nan

    def forward_features(self, x):
        return self.conv(x).mean(dim=(2, 3))

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        out = self.fc(self.forward_features(x))
        return out * float("nan") if self.nan else out


def tiny(num_classes: int = 3):
    return Tiny(num_classes)


def nan_logits(num_classes: int = 3):
    return Tiny(num_classes, nan=True)


class OomTiny(Tiny):
    """Raises the CUDA out-of-memory error for batches above `fits`, as a too-large batch would."""

    def __init__(self, num_classes: int = 3, fits: int = 4):
        super().__init__(num_classes)
        self.fits = fits

    def forward(self, x):
        import torch

        if x.shape[0] > self.fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} images")
        return super().forward(x)


def oom_tiny(num_classes: int = 3, fits: int = 4):
    return OomTiny(num_classes, fits)


def die_once(marker: str, num_classes: int = 3):
    """Kills its own process the first time it is built (a worker lost to the OOM killer), works after."""
    import os
    import signal
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return Tiny(num_classes)


def always_die(num_classes: int = 3):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def run_suite(tmp_path, text: str):
    """Write a suite, `bench run` it into tmp_path/res; (the CLI result, its rows or None when nothing was written)."""
    from typer.testing import CliRunner

    from bench.cli import app
    from bench.results import load_rows

    (tmp_path / "s.yaml").write_text(text)
    r = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "res")])
    return r, (load_rows([tmp_path / "res"]) if (tmp_path / "res").exists() else None)
