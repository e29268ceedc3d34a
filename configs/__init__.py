"""Hydra configs shipped with robopref (loaded as ``pkg://robopref.configs``)."""
