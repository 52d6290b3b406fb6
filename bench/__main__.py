"""`python -m bench …` is the `bench` command (what torchrun launches: `torchrun --nproc_per_node 8 -m bench run SUITE`)."""

from bench.cli import app

app()
