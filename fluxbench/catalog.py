"""Built-in registrations. Facts only; every factory is imported on first use."""

from fluxbench.models.fluxmusic.configs import CHECKPOINT_FILES, HUB_REPO, SIZES, SPEC_FILE
from fluxbench.protocols.sets.demo import DEFAULT_SIZES as DEMO_SIZES
from fluxbench.registry import register, register_model_folder

OFFLINE_DEFAULT = {"model": "fluxmusic-demo", "set": "demo"}  # what `fluxbench run` benchmarks with no names

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
        bound={"size": _size},
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
    items=DEMO_SIZES["heldout"],
    sample_rate=16000,
    duration=2.56,
    download=False,
    audio="synthesised on first use under $FLUXBENCH_CACHE/demo (no download)",
    generated_names="demo-heldout-00000.wav ...",
)

register("set", "musiccaps", "fluxbench.protocols.sets.musiccaps:MusicCaps",
         "MusicCaps: 5,521 ten-second AudioSet clips with expert captions (shipped; --subset all, audioset-eval, "
         "balanced, no-singing)",
         items=5521, audio="--audio-dir (or $FLUXBENCH_MUSICCAPS_AUDIO): <ytid>.wav|flac|mp3 ...",
         captions="shipped (musiccaps-public.csv, CC BY-SA 4.0, Google LLC); --captions overrides",
         subsets="all (5521), audioset-eval (2858), balanced (1000), no-singing (2218)",
         generated_names="<ytid>.wav|flac|mp3 ...")
register("set", "song-describer", "fluxbench.protocols.sets.song_describer:SongDescriber",
         "Song Describer: crowd-sourced captions of MTG-Jamendo recordings (shipped; --subset valid, all, "
         "no-singing, valid-no-singing)",
         items=746, audio="--audio-dir (or $FLUXBENCH_SONG_DESCRIBER_AUDIO): the dataset's audio/ tree",
         captions="shipped (song_describer.csv, Zenodo record 10072001, CC BY-SA 4.0); --captions overrides",
         subsets="valid (746), all (1106), no-singing (586), valid-no-singing (386)",
         generated_names="sdd-<caption_id>.wav or <caption_id>.wav (.flac, .mp3 ...)")

register("model", "fluxmusic-demo", "fluxbench.models.fluxmusic.demo:load_demo_model",
         "small FluxMusic (width 128) trained on the synthetic demo corpus (trained on first use; offline)",
         family="fluxmusic", size="demo", parameters=None, sample_rate=16000,
         weights="runs/demo-model (fluxbench train --preset demo)", trained_on_first_use="minutes on CPU")
register_model_folder(SPEC_FILE, "fluxbench.models.fluxmusic.pipeline:FluxMusicModel.from_folder",
                      "trained-model folder", family="fluxmusic")

# Baselines: one adapter per family behind the zoo interface; facts from fluxbench.models.baselines.specs.
from fluxbench.models.baselines.specs import SPECS as _BASELINES, factory_target as _baseline_target  # noqa: E402

for _spec in _BASELINES.values():
    register("model", _spec.name, _baseline_target(_spec), _spec.summary, bound={"name": _spec.name},
             **_spec.facts())

# Metrics, from the metric table (which defines them), and their backbones (facts only).
from fluxbench.protocols.metrics.table import METRICS as _METRICS  # noqa: E402

for _metric in _METRICS:
    _first = _metric.values[0]
    register("metric", _metric.name, _metric.compute, _metric.summary, backbone=_metric.source()[0],
             **({"reference_name": _first.reference_name} if _first.reference_name else {}),
             lower_is_better=_first.lower_is_better)

for _name, _target, _summary, _facts in [
    ("vggish", "fluxbench.protocols.metrics.backbones.vggish:VGGishBackbone.from_weights",
     "VGGish (torchvggish port), 16 kHz, one 128-d vector per 0.96 s",
     dict(sample_rate=16000, weights="vggish-10086976.pth (github.com/harritaylor/torchvggish release v0.1)")),
    ("panns-16k", "fluxbench.protocols.metrics.backbones.panns:Cnn14Backbone.from_weights",
     "PANNs CNN14 at 16 kHz: 2048-d embedding + 527 AudioSet logits per clip",
     dict(sample_rate=16000, weights="Cnn14_16k_mAP=0.438.pth (Zenodo record 3987831)")),
    ("panns-32k", "fluxbench.protocols.metrics.backbones.panns:Cnn14Backbone.from_weights",
     "PANNs CNN14 at 32 kHz: 2048-d embedding + 527 AudioSet logits per clip",
     dict(sample_rate=32000, weights="Cnn14_mAP=0.431.pth (Zenodo record 3987831)")),
    ("clap", "fluxbench.protocols.metrics.backbones.clap:ClapBackbone.from_pretrained",
     "CLAP text/audio embeddings through transformers ClapModel, 48 kHz",
     dict(sample_rate=48000, weights="hf://laion/larger_clap_music")),
    ("descriptor", "fluxbench.protocols.metrics.backbones.descriptor:DescriptorBackbone",
     "weight-free log-mel statistics + pitch-class profile (descriptor_* metrics, not FAD)",
     dict(sample_rate=16000, weights=None)),
]:
    register("backbone", _name, _target, _summary, **_facts)
