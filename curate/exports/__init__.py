"""atomvla.curate.exports."""
