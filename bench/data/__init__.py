"""Dataset readers. Each format is a pydantic spec with a ``load`` method; bench.data.formats says which
tasks accept which (images: ``load(role)`` → ImageSplit; captions: ``load()`` → CaptionSet)."""
