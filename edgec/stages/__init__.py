"""The pipeline's stages, one verb per file; pipeline.py alone orders them."""
