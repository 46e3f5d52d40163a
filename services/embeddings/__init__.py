"""The embeddings process: one copy of the local embedding model for the whole system."""
