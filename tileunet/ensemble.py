"""Ensembles of U-Nets: several networks trained with their own seeds, their soft-max maps averaged.

Not in the paper, which trains one network (section 3).  Networks trained
from different seeds merge and split different cells; the mean of their
class probabilities is steadier than any one of them, the reason nnU-Net
ensembles the networks of its 5 folds.  An :class:`Ensemble` is an
``nn.Module`` whose output is the logarithm of the mean soft-max, so that
everything built for one :class:`tileunet.model.UNet` (overlap-tile
inference, test-time augmentation, validation) runs it unchanged: the
soft-max of its output is the mean probability itself.  Members are trained with
the seeds of :func:`tileunet.repeats.member_seed`.
"""

import torch
from torch import nn


class Ensemble(nn.Module):
    """The mean soft-max of several U-Nets of one architecture, as log-probabilities.

    Parameters
    ----------
    members : sequence of tileunet.model.UNet
        Networks of equal ``config`` (the same input, classes and margin).

    Notes
    -----
    ``forward(x)`` returns ``log(mean_k softmax(member_k(x)))`` in float32,
    shape (B, classes, o, o) as one member's logits; its soft-max and argmax
    are those of the averaged probability.
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one network")
        configs = {m.config for m in members}
        if len(configs) > 1:
            raise ValueError(f"ensemble members differ in architecture: {sorted(map(str, configs))}. "
                             "Fix: train every member with the same model config")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, x):
        # a running sum, not a stack: one member's maps at a time beside the total (GPU memory in predict)
        total = sum(torch.softmax(m(x).float(), dim=1) for m in self.members)
        return torch.log((total / len(self.members)).clamp_min(torch.finfo(torch.float32).tiny))

    def input_size(self, output_size_):
        """Input edge needed for an output edge, as for one member."""
        return self.members[0].input_size(output_size_)

    @property
    def margin(self):
        """Context (px) lost on each side, as for one member."""
        return self.members[0].margin


def join(members, paths):
    """One :class:`Ensemble` of trained members, carrying their intensity normalisation and channels.

    Parameters
    ----------
    members : list of tileunet.model.UNet
        As :func:`tileunet.model.load_model` returns them.
    paths : list of str
        Their model files, for the messages.

    Returns
    -------
    Ensemble
        In eval mode, with ``normalization`` and ``channels`` of the members
        (which must agree: predict normalises and reads channels once for all).
    """
    for attr in ("config", "normalization", "channels"):
        values = [getattr(m, attr, None) for m in members]
        odd = next((p for p, v in zip(paths, values) if v != values[0]), None)
        if odd is not None:
            raise ValueError(f"{odd}: its {attr} {values[paths.index(odd)]} differs from {paths[0]}'s {values[0]}; "
                             "an ensemble's members must be trained on the same data with the same model config. "
                             "Fix: re-train the members (`snakemake --forcerun train_member`)")
    ensemble = Ensemble(members)
    ensemble.normalization, ensemble.channels = members[0].normalization, members[0].channels
    return ensemble.eval()
