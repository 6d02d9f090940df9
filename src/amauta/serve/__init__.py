"""amauta.serve"""
