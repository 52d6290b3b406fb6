"""Content hashes of JSON-able values: the keys of jobs, cache entries and blocks."""

from __future__ import annotations

import hashlib
import json


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
