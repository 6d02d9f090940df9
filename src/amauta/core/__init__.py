"""Small pieces every stage shares: one-line errors, atomic files, typed YAML configs, manifests."""

from amauta.core.errors import AmautaError

__all__ = ["AmautaError"]
