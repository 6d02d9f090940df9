"""amauta.documents"""
