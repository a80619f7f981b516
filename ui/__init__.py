"""atomvla.ui."""
