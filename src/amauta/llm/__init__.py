"""amauta.llm"""
