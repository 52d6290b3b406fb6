"""Dataset readers. Each format is a pydantic spec with a ``load(role)`` method."""
