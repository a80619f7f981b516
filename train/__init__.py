"""atomvla.train."""
