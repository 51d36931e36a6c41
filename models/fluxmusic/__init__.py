"""FluxMusic: rectified-flow transformer for text-to-music (Fei et al. 2024).

Importing this package is cheap; torch-backed names load on first use.
"""

from fluxbench.models.fluxmusic.configs import SIZES, FluxMusicConfig, get_config

_LAZY = {
    "FluxMusicTransformer": "fluxbench.models.fluxmusic.transformer",
    "load_transformer": "fluxbench.models.fluxmusic.checkpoint",
    "save_official": "fluxbench.models.fluxmusic.checkpoint",
}

__all__ = ["SIZES", "FluxMusicConfig", "get_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
