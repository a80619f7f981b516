"""atomvla.annotate."""
