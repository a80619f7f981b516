"""atomvla.annotate.evaluation."""
