"""The metric table is the one definition every reader of metrics uses."""

from __future__ import annotations

import pytest

from fluxbench import registry
from fluxbench.protocols.metrics.table import (BACKBONE_CHOICES, METRICS, RESULT_KEYS, MetricError, key_prefix,
                                               metric, sources)


def test_every_metric_computes_and_every_value_it_writes_has_a_label():
    for definition in METRICS:
        assert callable(definition.function()), definition.name
        for backbone in BACKBONE_CHOICES:
            if definition.source(backbone) is None:
                continue
            for value in definition.values:
                key = key_prefix(backbone) + value.key
                assert key in RESULT_KEYS, key
                assert RESULT_KEYS[key].lower_is_better == value.lower_is_better


def test_backbone_sources_follow_the_panns_variant_and_the_backbone_choice():
    assert sources("paper", "panns-32k")["kl"] == ("panns-32k", "logits")
    assert sources("paper")["fad"] == ("vggish", "frames") and sources("paper")["clap"] == ("clap", "audio")
    assert set(sources("MERT-v1-95M")) == {"fad", "kad"}
    assert sources("MERT-v1-95M")["kad"] == ("MERT-v1-95M", "kad_frames")
    assert "clap" not in sources("descriptor")


def test_the_registry_and_the_labels_come_from_the_table():
    entry = registry.get("metric", "kl")
    assert entry.facts["reference_name"] == "kullback_leibler_divergence_softmax"
    assert entry.load() is metric("kl").function()
    assert {e.name for e in registry.entries("metric")} == {m.name for m in METRICS}
    assert (RESULT_KEYS["descriptor_fad"].label, RESULT_KEYS["clap-laion-music_fad_inf"].label) == (
        "desc. FD (frames)", "FAD-CLAP-inf")
    with pytest.raises(MetricError, match="unknown metric 'fid'"):
        metric("fid")
