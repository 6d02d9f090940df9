"""amauta.rag"""
