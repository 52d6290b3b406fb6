"""The sha256 store: each file hashed once per (path, size, mtime), across processes, appended in O(1)."""

import os

import bench.filehash as F


def _fresh(monkeypatch, cache):
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    monkeypatch.setattr(F, "_memo", {})
    monkeypatch.setattr(F, "_loaded", {})
    monkeypatch.setattr(F, "_torn", {})


def test_hashes_are_remembered_and_redone_when_a_file_changes(tmp_path, monkeypatch):
    _fresh(monkeypatch, tmp_path / "cache")
    files = [tmp_path / f"f{i}" for i in range(50)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 100)
    first = [F.sha256_of(str(f)) for f in files]
    assert len(set(first)) == 50
    assert len((tmp_path / "cache" / "file_sha256.jsonl").read_text().splitlines()) == 50  # one line per new file

    _fresh(monkeypatch, tmp_path / "cache")  # another process reads the store and hashes nothing
    calls = []
    real = F._hash_file
    monkeypatch.setattr(F, "_hash_file", lambda p: calls.append(p) or real(p))
    assert [F.sha256_of(str(f)) for f in files] == first and calls == []

    files[3].write_bytes(b"changed")
    st = os.stat(files[3])
    os.utime(files[3], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert F.sha256_of(str(files[3])) != first[3] and calls == [str(files[3])]


def test_a_torn_last_line_is_skipped(tmp_path, monkeypatch):
    _fresh(monkeypatch, tmp_path / "cache")
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    F.sha256_of(str(tmp_path / "a"))
    with open(tmp_path / "cache" / "file_sha256.jsonl", "a") as f:
        f.write('["half a li')  # a writer killed mid-line
    _fresh(monkeypatch, tmp_path / "cache")
    assert F.sha256_of(str(tmp_path / "a")) == F._hash_file(str(tmp_path / "a"))
    assert F.sha256_of(str(tmp_path / "b")) == F._hash_file(str(tmp_path / "b"))
    _fresh(monkeypatch, tmp_path / "cache")  # b's line was not glued onto the torn one
    assert set(F._known(tmp_path / "cache" / "file_sha256.jsonl")) == {f"{tmp_path / n}|1|{os.stat(tmp_path / n).st_mtime_ns}" for n in "ab"}
