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

register("set", "musiccaps", "fluxbench.protocols.sets.musiccaps:MusicCaps",
         "MusicCaps: 5,521 ten-second AudioSet clips with expert captions (musiccaps-public.csv)",
         items=5521, audio="--audio-dir (or $FLUXBENCH_MUSICCAPS_AUDIO): <ytid>.wav|flac|mp3 ...",
         captions="google/MusicCaps (hub dataset) or --captions musiccaps-public.csv")
register("set", "song-describer", "fluxbench.protocols.sets.song_describer:SongDescriber",
         "Song Describer: crowd-sourced captions of MTG-Jamendo recordings, valid subset",
         items=746, audio="--audio-dir (or $FLUXBENCH_SONG_DESCRIBER_AUDIO): the dataset's audio/ tree",
         captions="song_describer.csv (Zenodo record 10072001)")

register("model", "fluxmusic-demo", "fluxbench.models.fluxmusic.demo:load_demo_model",
         "tiny FluxMusic trained on the synthetic demo corpus (trained on first use; offline)",
         family="fluxmusic", size="tiny", parameters=None, sample_rate=16000,
         weights="runs/demo-model (fluxbench train --preset demo)")

# Baselines: one adapter per family behind the zoo interface; facts from fluxbench.models.baselines.specs.
from fluxbench.models.baselines.specs import SPECS as _BASELINES, factory_target as _baseline_target  # noqa: E402

for _spec in _BASELINES.values():
    register("model", _spec.name, _baseline_target(_spec), _spec.summary, **_spec.facts())
