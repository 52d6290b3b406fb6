"""`bench cache ls|prune`: sizes and ages, pruning by age and by total size, datasets only on request."""

import os
import time

import numpy as np
from typer.testing import CliRunner

from bench.cache import OutputCache, entries, parse_size, prune
from bench.cli import app


def test_cache_ls_and_prune(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    c = OutputCache()
    now = time.time()
    for i, age_days in enumerate([10, 5, 0]):
        key = f"{i:02d}" + "a" * 14
        c.put(key, np.zeros(256, np.float32))  # 1 KiB + header
        os.utime(c.path(key), (now - age_days * 86400, now - age_days * 86400))
    (tmp_path / "datasets" / "digits").mkdir(parents=True)
    (tmp_path / "datasets" / "digits" / "x.png").write_bytes(b"0" * 100)
    os.utime(tmp_path / "datasets" / "digits" / "x.png", (now - 30 * 86400, now - 30 * 86400))
    r = CliRunner().invoke(app, ["cache", "ls"])
    assert r.exit_code == 0 and "outputs" in r.output and "│       3 │" in r.output
    # decoded clips are listed and pruned with the rest
    (tmp_path / "clips" / "ab").mkdir(parents=True)
    (tmp_path / "clips" / "ab" / "abcd.npz").write_bytes(b"0" * 10)
    os.utime(tmp_path / "clips" / "ab" / "abcd.npz", (now - 20 * 86400, now - 20 * 86400))
    r = CliRunner().invoke(app, ["cache", "ls"])
    assert "clips" in r.output and [e.kind for e in entries()].count("clips") == 1
    r = CliRunner().invoke(app, ["cache", "prune", "--older-than", "15"])
    assert r.exit_code == 0 and "deleted 1 of 4 entries" in r.output and not (tmp_path / "clips" / "ab" / "abcd.npz").exists()
    # age: the 10-day entry goes; datasets are kept unless asked for
    r = CliRunner().invoke(app, ["cache", "prune", "--older-than", "7"])
    assert r.exit_code == 0 and "deleted 1 of 3 entries" in r.output
    assert sorted(e.path.name[:2] for e in entries() if e.kind == "outputs") == ["01", "02"]
    assert (tmp_path / "datasets" / "digits").exists()
    # a read marks an entry used: the 5-day one becomes the newest, the fresh one the least recently used
    assert c.get("01" + "a" * 14) is not None
    size = entries()[0].size
    r = CliRunner().invoke(app, ["cache", "prune", "--max-size", str(size)])
    assert "deleted 1 of 2 entries" in r.output
    assert [e.path.name[:2] for e in entries() if e.kind == "outputs"] == ["01"]
    r = CliRunner().invoke(app, ["cache", "prune", "--all", "--datasets", "--dry-run"])
    assert "would delete 2 of 2 entries" in r.output and (tmp_path / "datasets" / "digits").exists()
    r = CliRunner().invoke(app, ["cache", "prune"])
    assert r.exit_code == 2 and "--older-than DAYS, --max-size SIZE or --all" in r.output


def test_prune_selection_and_sizes():
    from bench.cache import Entry
    from pathlib import Path

    es = [Entry(Path(str(i)), "outputs", 100, mtime) for i, mtime in enumerate([1.0, 3.0, 2.0])]
    assert [e.path.name for e in prune(es, max_bytes=150, now=10.0)] == ["0", "2"]  # oldest first until it fits
    assert [e.path.name for e in prune(es, older_than_days=8.5 / 86400, now=10.0)] == ["0"]
    assert parse_size("1.5K") == 1536 and parse_size("20G") == 20 << 30 and parse_size("123") == 123
