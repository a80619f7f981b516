"""`python -m atomvla.curate` is `atom-curate`."""

from atomvla.curate.cli import app

app()
