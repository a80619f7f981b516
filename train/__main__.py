"""`python -m atomvla.train` is `atom-train` (also what `torchrun -m atomvla.train ...` launches)."""

from atomvla.train.cli import app

app(prog_name="atom-train")
