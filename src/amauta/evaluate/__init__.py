"""amauta.evaluate"""
