"""amauta.train"""
