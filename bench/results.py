"""Result rows: the long-format schema, atomic Parquet writes, and the leaderboard union."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import BenchError

SCHEMA = pa.schema(
    [
        ("suite", pa.string()),
        ("model", pa.string()),
        ("task", pa.string()),
        ("task_type", pa.string()),  # the task family (its declarations: headline, lower-is-better metrics)
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("metric", pa.string()),
        ("method", pa.string()),  # a method applied on top of the model (OOD postprocessor), else empty
        ("value", pa.float64()),
        ("n", pa.int64()),
        ("stderr", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("ci_method", pa.string()),  # how stderr/ci_low/ci_high were made: wilson, bootstrap(unit=…,resamples=…,seed=…)
        ("status", pa.string()),  # ok | failed
        ("error", pa.string()),
        ("convention", pa.string()),
        # provenance
        ("run_id", pa.string()),
        ("bench_version", pa.string()),
        ("git_sha", pa.string()),
        ("job_hash", pa.string()),
        ("task_hash", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("torch", pa.string()),
        ("timm", pa.string()),
        ("open_clip", pa.string()),
        ("device", pa.string()),
        ("machine", pa.string()),  # CPU model, or the GPU's name on CUDA
        ("threads", pa.int64()),  # torch intra-op threads
        ("blas", pa.string()),  # BLAS library and version numpy/scikit-learn call (threadpoolctl)
        ("precision", pa.string()),
        ("batch_size", pa.int64()),
        ("seed", pa.int64()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("wall_s", pa.float64()),
        ("samples_per_s", pa.float64()),
        ("meta", pa.string()),  # JSON: protocol choices and adapter metadata
    ]
)
COLUMNS = SCHEMA.names
KEY = ["suite", "model", "task", "dataset", "split", "metric", "method"]


def atomic_write_bytes(path: Path, write) -> None:
    """Write through a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def rows_table(rows: list[dict]) -> pa.Table:
    data = {c: [r.get(c) for r in rows] for c in COLUMNS}
    return pa.Table.from_pydict(data, schema=SCHEMA)


def write_rows(path: Path, rows: list[dict]) -> None:
    table = rows_table(rows)
    atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))


def write_frame(path: Path, df: pd.DataFrame | pa.Table) -> None:
    """A DataFrame, or an Arrow table (typed columns built without a pandas round trip)."""
    if isinstance(df, pa.Table):
        atomic_write_bytes(path, lambda tmp: pq.write_table(df, tmp))
    else:
        atomic_write_bytes(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_json(path: Path, obj) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str)

    atomic_write_bytes(path, w)


def _read(path: Path) -> pd.DataFrame:
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as e:
        raise BenchError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    missing = {"model", "task", "metric", "value", "status"} - set(df.columns)
    if missing:
        raise BenchError(f"{path}: not a bench results file (missing columns: {', '.join(sorted(missing))})")
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    return df[COLUMNS]


def row_files(path: Path) -> list[Path]:
    """A Parquet file, or every job's rows under a results folder (falling back to any Parquet)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BenchError(f"{path}: results path does not exist")
    files = sorted(path.rglob("rows/*.parquet"))
    return files or sorted(p for p in path.rglob("*.parquet") if p.parent.name != "predictions")


def load_rows(paths: Iterable[str | Path], with_source: bool = False) -> pd.DataFrame:
    """The union of all rows; for the same job and metric the newest row wins.

    with_source adds `_rows_file`, the Parquet each row came from (its predictions lie beside it).
    """
    files = [f for p in paths for f in row_files(Path(p))]
    if not files:
        raise BenchError(f"no result rows found in {', '.join(str(p) for p in paths)}")
    df = pd.concat([_read(f).assign(_rows_file=str(f)) if with_source else _read(f) for f in files], ignore_index=True)
    df = df.sort_values("started_at", kind="stable", na_position="first")
    df = df.drop_duplicates(subset=["job_hash", "dataset", "split", "metric", "method"], keep="last")
    # a job that later succeeded drops its old failure row, and vice versa
    latest = df.groupby(["suite", "model", "task"], dropna=False)["started_at"].transform("max")
    df = df[(df["started_at"] == latest) | df["started_at"].isna()]
    return df.reset_index(drop=True)


def job_rows_ok(path: Path) -> bool:
    try:
        status = pq.read_table(path, columns=["status"]).column("status").to_pylist()
    except Exception:
        return False  # unreadable rows are recomputed, never trusted
    return bool(status) and all(s == "ok" for s in status)


@lru_cache(maxsize=1)
def environment() -> dict[str, Optional[str]]:
    import bench

    def version(dist):
        # the installed distribution's version, read from its metadata: importing timm and
        # open_clip only to read __version__ costs seconds on a run that never uses them
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def torch_version():
        # with the local build tag (+cpu, +cu130) that the metadata lacks, read from torch/version.py
        import importlib.util
        import re

        spec = importlib.util.find_spec("torch")
        try:
            text = (Path(spec.origin).parent / "version.py").read_text()
            return re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M).group(1)
        except (AttributeError, OSError, TypeError):
            return version("torch")

    src = Path(bench.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except Exception:
        sha = None
    return {
        "bench_version": bench.__version__,
        "git_sha": sha,
        "torch": torch_version(),
        "timm": version("timm"),
        "open_clip": version("open_clip_torch"),
        "blas": blas_library(),
    }


def cpu_model() -> Optional[str]:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def blas_library() -> Optional[str]:
    try:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except Exception:
        return None
    return ", ".join(sorted({f"{i.get('internal_api')} {i.get('version')}" for i in libs})) or None


def machine(device: str) -> dict:
    """What the numbers ran on: the CPU model or the GPU name, and the torch thread count."""
    if not device.startswith("cuda") and "torch" not in sys.modules:
        return {"machine": cpu_model(), "threads": None}  # a results-file run: torch never ran
    import torch

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") and torch.cuda.is_available() else cpu_model()
    return {"machine": name, "threads": torch.get_num_threads()}
