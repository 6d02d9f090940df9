"""amauta.data"""
