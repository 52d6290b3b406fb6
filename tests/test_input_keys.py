"""Decoded inputs and model outputs are keyed by the files' identity, not only their paths."""

import os
from types import SimpleNamespace

from bench.filehash import stat_identity
from bench.inputs import key_for

PRE = SimpleNamespace(input_size=20, crop_pct=0.9, interpolation="bicubic", resize="shorter")


def test_an_image_overwritten_in_place_changes_the_key(tmp_path):
    paths = [str(tmp_path / f"{i}.jpg") for i in range(3)]
    for p in paths:
        open(p, "wb").write(b"jpeg")
    before, ident = key_for(paths, PRE), stat_identity(paths)
    assert key_for(paths, PRE) == before  # unchanged files: the same key, so the cache is reused
    open(paths[1], "wb").write(b"other")
    assert key_for(paths, PRE) != before and stat_identity(paths) != ident
    again = key_for(paths, PRE)
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, rewritten later
    assert key_for(paths, PRE) != again


def test_a_missing_image_still_has_a_key(tmp_path):
    paths = [str(tmp_path / "gone.jpg")]
    assert key_for(paths, PRE) == key_for(paths, PRE)  # the reader, not the key, names the missing file
