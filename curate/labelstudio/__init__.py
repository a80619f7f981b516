"""Label Studio round trip: episodes go out as video tasks with the current decomposition as a
prediction (`atom-curate labelstudio export`), annotations come back as revisions authored by
the Label Studio user (`atom-curate labelstudio import`).

`config` writes the labeling config, `regions` converts between decompositions and Label Studio
results (its frames count from 1, inclusive at both ends), `server` talks to the server through
`label_studio_sdk`, `cli` is the typer sub-app.
"""
