"""robopref: robot policies learned by imitation, refined with rewards learned from preferences."""

__version__ = "0.1.0"
