"""Model registry, loading (hub id, folder, GGUF, embedded package), templates and tiny test models."""
