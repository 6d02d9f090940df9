"""amauta.chat"""
