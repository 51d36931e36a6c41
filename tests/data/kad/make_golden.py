"""Writes golden.npz: seeded embeddings and kadtk 1.1.0's own KAD values for them (run by hand, not by pytest).

Needs an environment with `pip install kadtk==1.1.0 --no-deps`, torch and numpy. kadtk's package __init__
imports every embedding model's dependencies, so only its kad.py module is loaded, with the two modules it
imports for its file-level classes replaced by empty ones; calc_kernel_audio_distance and
median_pairwise_distance run unchanged.

    python tests/data/kad/make_golden.py tests/data/kad/golden.npz
"""

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch


def load_kadtk_kad():
    spec = importlib.util.find_spec("kadtk")
    folder = Path(spec.submodule_search_locations[0])
    package = types.ModuleType("kadtk")
    package.__path__ = [str(folder)]
    sys.modules["kadtk"] = package
    for name, attrs in (("hypy_utils", {"write": None}), ("hypy_utils.tqdm_utils", {"tmap": None, "tq": None}),
                        ("kadtk.emb_loader", {"EmbeddingLoader": object}), ("kadtk.model_loader", {"ModelLoader": object})):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    module_spec = importlib.util.spec_from_file_location("kadtk.kad", folder / "kad.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


CASES = {  # name: (generated rows, reference rows, dims, generated mean shift, scale of the generated set)
    "shifted": (60, 80, 16, 0.5, 1.0),
    "close_small": (10, 12, 8, 0.0, 1.0),
    "wide": (150, 200, 64, 0.1, 1.3),
    "odd_pairs": (7, 9, 5, 1.0, 0.5),  # 21 and 36 distances: odd and even counts for the lower median
}


def main(out: str) -> None:
    kad = load_kadtk_kad()
    rng = np.random.default_rng(20250221)
    arrays = {"kadtk_version": np.array(importlib.metadata.version("kadtk"))}
    for name, (n_gen, n_ref, dims, shift, scale) in CASES.items():
        ref = rng.standard_normal((n_ref, dims)).astype(np.float32)
        gen = (shift + scale * rng.standard_normal((n_gen, dims))).astype(np.float32)
        x, y = torch.from_numpy(ref), torch.from_numpy(gen)
        median_gen = kad.median_pairwise_distance(gen)
        median_ref = kad.median_pairwise_distance(ref)

        def call(precision, bandwidth=None):
            return float(kad.calc_kernel_audio_distance(x, y, (None, None), "cpu", bandwidth=bandwidth,
                                                        precision=precision))

        arrays.update({
            f"{name}.generated": gen, f"{name}.reference": ref,
            f"{name}.median_generated": np.float64(median_gen), f"{name}.median_reference": np.float64(median_ref),
            # kadtk's default call: bandwidth from its `y` argument (the generated set), float64 kernel sums.
            f"{name}.kad_default_float64": np.float64(call(torch.float64)),
            f"{name}.kad_default_float32": np.float64(call(torch.float32)),
            # The README's rule: bandwidth from the reference set, passed explicitly.
            f"{name}.kad_reference_bandwidth_float64": np.float64(call(torch.float64, median_ref)),
            f"{name}.kad_bandwidth_2_float64": np.float64(call(torch.float64, 2.0)),
        })
    np.savez_compressed(out, **arrays)
    for key, value in arrays.items():
        if value.ndim == 0:
            print(key, value)


if __name__ == "__main__":
    main(sys.argv[1])
