"""Data sets and batching: loaders, generators and collation. No models, no losses."""
