"""Amauta: turn small open language models into Spanish-speaking chatbots and domain experts."""

__version__ = "0.1.0"
