"""The paper's U-Net: sizes, crop-and-concatenate, He initialisation, model.pt round trip."""

import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from tileunet.config import defaults
from tileunet import __version__
from tileunet.model import UNet, center_crop, input_size, read_model_file, load_model, output_size, save_model


def test_paper_network_sizes_and_layer_count():
    net = UNet()
    assert output_size(572) == 388 and input_size(388) == 572
    assert net.output_size(572) == 388 and net.input_size(388) == 572 and net.margin == 92
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 23  # paper section 2: "In total the network has 23 convolutional layers"
    assert [m.out_channels for m in net.down.modules() if isinstance(m, nn.Conv2d)][::2] == [64, 128, 256, 512, 1024]
    assert [m.out_channels for m in net.upconv] == [512, 256, 128, 64]


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_forward_output_size_matches_helpers(depth, padding):
    net = UNet(depth=depth, base_channels=1, padding=padding, dropout=0.0).eval()
    sizes = [s for s in range(8, 8 + 40 * 2 ** depth) if output_size(s, depth, padding)][:3]
    assert sizes, "some valid size exists"
    for size in sizes:
        with torch.no_grad():  # valid edges are 2**(depth-1) apart: a non-square valid tile
            out = net(torch.zeros(1, 1, size, size + 2 ** (depth - 1)))
        assert out.shape[1] == 2 and out.shape[-2] == net.output_size(size)
        assert out.shape[-1] == net.output_size(out.shape[-1] + 2 * net.margin)
        if padding == "same":
            assert out.shape[-2] == size and net.margin == 0


def test_network_refuses_invalid_tiles_and_paddings():
    net = UNet(depth=2, base_channels=1)
    with pytest.raises(ValueError, match="nearest valid sizes"):
        net(torch.zeros(1, 1, 29, 28))
    with pytest.raises(ValueError, match="padding"):
        UNet(padding="reflect")


def test_center_crop_hand_built():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    expected = torch.tensor([[14.0, 15.0], [20.0, 21.0]])
    assert torch.equal(center_crop(x, (2, 2))[0, 0], expected)
    assert torch.equal(center_crop(x, (4, 2))[0, 0], x[0, 0, 1:5, 2:4])


def test_forward_concatenates_cropped_skip_before_upsampled():
    net = UNet(depth=2, base_channels=2, dropout=0.0).eval()
    seen = {}
    net.down[0].register_forward_hook(lambda m, i, o: seen.__setitem__("skip", o.clone()))
    net.upconv[0].register_forward_hook(lambda m, i, o: seen.__setitem__("up", o.clone()))
    net.up[0].register_forward_pre_hook(lambda m, i: seen.__setitem__("cat", i[0].clone()))
    with torch.no_grad():
        net(torch.randn(1, 1, 28, 28))
    skip, up, cat = seen["skip"], seen["up"], seen["cat"]
    assert skip.shape[-1] == 24 and up.shape[-1] == 16 and cat.shape == (1, 4, 16, 16)
    assert torch.equal(cat[:, :2], skip[:, :, 4:20, 4:20])  # centre crop: (24 - 16) / 2 = 4 px per side
    assert torch.equal(cat[:, 2:], up)


def test_he_initialisation_statistics():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=32)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):
            fan_in = m.in_channels  # stride 2 = kernel 2: each output pixel sees one tap per input channel
        else:
            continue
        w = m.weight.detach().double()
        std = math.sqrt(2.0 / fan_in)
        n = w.numel()
        # sample std within 5 standard errors of the target; mean near 0
        assert abs(w.std().item() - std) < 5 * std / math.sqrt(2 * n), (m, w.std().item(), std)
        assert abs(w.mean().item()) < 5 * std / math.sqrt(n)
        assert torch.count_nonzero(m.bias) == 0


def test_dropout_elementwise_in_training_only():
    net = UNet(depth=2, base_channels=4, dropout=0.5)
    assert isinstance(net.dropout, nn.Dropout)
    x = torch.randn(1, 1, 28, 28)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))
    assert isinstance(UNet(depth=2, base_channels=1, dropout=0.0).dropout, nn.Identity)


def test_save_and_load_model_round_trip(tmp_path):
    torch.manual_seed(1)
    net = UNet(depth=2, base_channels=4, batch_norm=True, dropout=0.2)
    path = tmp_path / "model" / "model.pt"
    norm = {"method": "percentile", "low": 1.0, "high": 99.8}
    save_model(path, net, norm, extra={"iterations": 7})
    loaded = load_model(path)
    assert not loaded.training and loaded.config == net.config and loaded.normalization == norm
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    payload = read_model_file(path)
    assert payload["tileunet_version"] == __version__ and payload["iterations"] == 7
    x = torch.randn(2, 1, 28, 28)
    net.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), loaded(x).numpy())
    assert list(tmp_path.joinpath("model").iterdir()) == [path]  # no temporary left
    with pytest.raises(ValueError, match="reserved"):
        save_model(path, net, norm, extra={"config": {}})


def test_load_model_refuses_foreign_files(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="x.pt.*Fix"):
        load_model(bad)
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a tileunet model file"):
        load_model(bad)


def test_the_papers_network_is_the_schemas_default():
    """UNet(...) keeps the paper's defaults in its signature (the contract); they are the schema's.

    The schema's ``in_channels`` is null (it follows the images); the paper's one grey channel is UNet's default.
    """
    signature = {k: p.default for k, p in inspect.signature(UNet).parameters.items() if k != "n_classes"}
    assert signature == {**defaults("model"), "in_channels": 1}
