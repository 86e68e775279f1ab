"""The U-Net of Ronneberger et al. 2015 (section 2, figure 1) and its checkpoint format.

Contracting path: per level two 3x3 convolutions + ReLU, then 2x2 max-pool
(stride 2) with the channels doubling; expanding path: 2x2 up-convolution
halving the channels, concatenation with the centre-cropped feature map of
the same level, two 3x3 convolutions + ReLU; a final 1x1 convolution to the
classes.  Drop-out at the end of the contracting path (section 3.1; element-wise,
as Caffe's Dropout layer the authors used, not channel-wise).  Weights
are drawn from a Gaussian with std sqrt(2/N), N = incoming nodes of one
neuron (section 3).  ``padding="valid"`` is the paper; ``"same"`` is an option.
"""

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .ensemble import Ensemble
# The size arithmetic lives in a torch-free module (the workflow checks tile sizes before any job);
# re-exported here, where it has always been public.
from .geometry import check_input_size, input_size, margin, output_size, valid_sizes_near  # noqa: F401


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (stored in model.pt)."""

    in_channels: int = 1
    n_classes: int = 2
    depth: int = 5
    base_channels: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    dropout: float = 0.5


def _double_conv(cin, cout, pad, batch_norm):
    layers = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=pad, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x, size):
    """Crop the last two axes of ``x`` (N, C, H, W) to ``size`` = (h, w), centred."""
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


class UNet(nn.Module):
    """The paper's U-Net.

    Parameters
    ----------
    in_channels, n_classes : int
    depth : int
        Resolution levels; 5 in the paper (4 poolings, 23 convolutions).
    base_channels : int
        Channels at the first level (64 in the paper), doubled per level.
    padding : {"valid", "same"}
        "valid" is the paper's unpadded convolution: 572 -> 388 at depth 5.
    batch_norm : bool
        Not in the paper; off by default.
    dropout : float
        Drop-out probability at the end of the contracting path.
    """

    def __init__(self, in_channels=1, n_classes=2, depth=5, base_channels=64, padding="valid",
                 batch_norm=False, dropout=0.5):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        for name, value in (("in_channels", in_channels), ("n_classes", n_classes), ("depth", depth),
                            ("base_channels", base_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.config = UNetConfig(in_channels, n_classes, depth, base_channels, padding, batch_norm, dropout)
        pad = 0 if padding == "valid" else 1
        chans = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_double_conv(cin, c, pad, batch_norm))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.upconv = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                    for i in reversed(range(depth - 1)))
        self.up = nn.ModuleList(_double_conv(2 * chans[i], chans[i], pad, batch_norm)
                                for i in reversed(range(depth - 1)))
        self.head = nn.Conv2d(chans[0], n_classes, 1)
        self.reset_parameters()

    def reset_parameters(self):
        """He initialisation: N(0, sqrt(2/N)), N = k*k*C_in incoming nodes (paper section 3)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                k = m.kernel_size[0] * m.kernel_size[1]
                # Conv2d weight is (out, in, k, k); ConvTranspose2d's is (in, out, k, k): a neuron
                # of the up-convolution sees in_channels inputs at stride 2, i.e. 1 tap per channel
                # per output pixel on a 2x2 kernel with stride 2.
                fan_in = m.in_channels * (k if isinstance(m, nn.Conv2d) else 1)
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        """(N, C_in, H, W) -> logits (N, n_classes, H', W'), H' = output_size(H).

        An H or W that some 2x2 pooling would see odd is refused with the
        nearest valid sizes (paper section 2).
        """
        for edge in x.shape[-2:]:
            check_input_size(int(edge), self.config.depth, self.config.padding)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for upconv, block in zip(self.upconv, self.up):
            x = upconv(x)
            x = torch.cat([center_crop(skips.pop(), x.shape[-2:]), x], dim=1)
            x = block(x)
        return self.head(x)

    def output_size(self, input_size):
        """Output edge for an input edge; see :func:`output_size`."""
        return output_size(input_size, self.config.depth, self.config.padding)

    def input_size(self, output_size_):
        """Input edge needed for an output edge; see :func:`input_size`."""
        return input_size(output_size_, self.config.depth, self.config.padding)

    @property
    def margin(self):
        """Context (px) lost on each side: (input - output) / 2; 92 for the paper's net."""
        return margin(self.config.depth, self.config.padding)


def save_model(path, model, normalization, extra=None):
    """Write ``model.pt``: weights, model config, intensity normalisation, tileunet version.

    Written atomically (temporary name, then rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clash = sorted(set(extra or {}) & {"state_dict", "config", "normalization", "tileunet_version"})
    if clash:
        raise ValueError(f"extra must not overwrite the reserved keys {clash}")
    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "config": dataclasses.asdict(model.config),
               "normalization": dict(normalization),
               "tileunet_version": __version__,
               **(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_model_file(path):
    """The raw model.pt dictionary (weights on CPU); raises a clear error on a foreign file."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message suggests weights_only=False, which a foreign file must never get
        raise ValueError(f"{path}: not a readable tileunet model file ({type(exc).__name__} in torch.load). "
                         "Fix: re-run `snakemake train` to write it again") from exc
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path}: not a tileunet model file (no config/state_dict). "
                         "Fix: point to results/model/model.pt written by tileunet")
    major = lambda v: str(v).split(".")[0]  # noqa: E731
    if major(payload.get("tileunet_version", "?")) != major(__version__):
        raise ValueError(f"{path}: written by tileunet {payload.get('tileunet_version')}, this is {__version__}. "
                         "Fix: re-train with this version (`snakemake --forcerun train`)")
    return payload


def load_model(path, device="cpu"):
    """Rebuild the model from ``model.pt``, in eval mode on ``device``.

    The intensity normalisation is attached as ``model.normalization``, the
    post-processing chosen on the validation images
    (:func:`tileunet.postprocess.tune`) as ``model.postprocessing`` (None if
    the file holds none), the names of the training images' channels as
    ``model.channels`` (None for single-channel images).  A file with
    ``members`` (the number of networks) rebuilds a
    :class:`tileunet.ensemble.Ensemble`.
    """
    return from_model_file(read_model_file(path), device)


def from_model_file(payload, device="cpu"):
    """:func:`load_model` of a dictionary :func:`read_model_file` returned."""
    model = UNet(**payload["config"])
    if payload.get("members"):  # an ensemble (train.ensemble > 1): one state dict of all members
        model = Ensemble([model] + [UNet(**payload["config"]) for _ in range(payload["members"] - 1)])
    model.load_state_dict(payload["state_dict"])
    model.normalization = payload.get("normalization", {})
    model.postprocessing = payload.get("postprocessing")
    model.channels = payload.get("channels")
    return model.to(device).eval()
