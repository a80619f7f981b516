"""atomvla.annotate.backends."""
