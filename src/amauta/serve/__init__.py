"""An OpenAI-compatible HTTP API and a web chat page over Amauta's models (and RAG indexes)."""
