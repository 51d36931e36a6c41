"""Built-in registrations. Facts only; every factory is imported on first use."""

from fluxbench.models.fluxmusic.configs import CHECKPOINT_FILES, HUB_REPO, SIZES
from fluxbench.registry import register

_SIZE_BLURB = {
    "small": "FluxMusic-Small (paper Table 1), 200K-step release",
    "base": "FluxMusic-Base (paper Table 1), 200K-step release",
    "large": "FluxMusic-Large (paper Table 1), 200K-step release",
    "giant": "FluxMusic-Giant (paper Table 1), 200K-step release",
    "giant_full": "FluxMusic giant width, base depth: the 2M-step full release",
}

for _size, _blurb in _SIZE_BLURB.items():
    _config = SIZES[_size]
    register(
        "model",
        "fluxmusic-" + _size.replace("_", "-"),
        "fluxbench.models.fluxmusic.pipeline:FluxMusicModel.for_size",
        _blurb,
        family="fluxmusic",
        size=_size,
        parameters=_config.parameter_count(),
        sample_rate=16000,
        weights=f"hf://{HUB_REPO}/{CHECKPOINT_FILES[_size]}",
        gflops=_config.paper_gflops(),
        hidden=_config.hidden_size,
        heads=_config.num_heads,
        double_blocks=_config.depth,
        single_blocks=_config.depth_single_blocks,
    )

register(
    "set",
    "demo",
    "fluxbench.protocols.sets.demo:DemoSet",
    "offline demo corpus: synthesised captioned melodies over chords (held-out split; no download)",
    items=32,
    sample_rate=16000,
    duration=2.56,
    download=False,
)
