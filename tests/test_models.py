"""Models: normalisation inside, perturbation sites on the residual branch only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robdrop.models import ARCHITECTURES, armed, build_model, capturing, sites
from robdrop.models.preact_resnet import PreActBlock
from robdrop.models.resnet50 import resnet50


def test_every_architecture_has_a_site_per_residual_block():
    expected = {"prn18": 8, "prn20": 9, "wrn34": 15, "resnet50": 16}
    for arch in ARCHITECTURES:
        model = build_model(arch, 10, (0.5,) * 3, (0.25,) * 3, width=1 if arch == "wrn34" else 4)
        assert len(sites(model)) == expected[arch]
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_normalisation_lives_inside_the_model():
    model = build_model("prn20", 10, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), width=4).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = model.net((x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2)
    assert torch.allclose(model(x), expected)


def _block_by_hand(block: PreActBlock, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    out = F.relu(block.bn1(x))
    shortcut = x if block.shortcut is None else block.shortcut(out)  # δ never reaches the shortcut
    branch = block.conv2(F.relu(block.bn2(block.conv1(out + delta))))
    return shortcut + branch


def test_site_adds_delta_to_the_residual_branch_only():
    torch.manual_seed(0)
    for in_planes, planes, stride in ((4, 4, 1), (4, 8, 2)):
        block = PreActBlock(in_planes, planes, stride).eval()
        x = torch.randn(2, in_planes, 8, 8)
        delta = torch.randn(2, in_planes, 8, 8)
        assert torch.allclose(block(x), _block_by_hand(block, x, torch.zeros_like(x)))
        with armed(block, [delta]):
            out = block(x)
        assert torch.allclose(out, _block_by_hand(block, x, delta), atol=1e-6)
        assert not torch.allclose(out, block(x))  # the site is disarmed again
        assert torch.allclose(block(x), _block_by_hand(block, x, torch.zeros_like(x)))


@pytest.mark.parametrize(("in_planes", "planes", "stride"), [(4, 4, 1), (4, 8, 2)])
def test_capture_reports_the_gradient_at_the_branch_input(in_planes, planes, stride):
    torch.manual_seed(0)
    block = PreActBlock(in_planes, planes, stride).eval()
    x = torch.randn(2, in_planes, 8, 8, requires_grad=True)
    with capturing(block) as found:
        out = block(x)
        loss = out.square().sum()
        (g,) = torch.autograd.grad(loss, [found[0].captured])
    assert torch.equal(out, block(x))  # capturing does not change the output
    d = torch.zeros(2, in_planes, 8, 8, requires_grad=True)
    (expected,) = torch.autograd.grad(_block_by_hand(block, x, d).square().sum(), [d])
    assert torch.allclose(g, expected, atol=1e-5)


def test_resnet50_site_perturbs_the_branch_not_the_downsample():
    torch.manual_seed(0)
    block = resnet50(10, width=8).layer2[0].eval()  # has a downsample shortcut
    x = torch.randn(1, block.conv1.in_channels, 8, 8)
    delta = torch.randn_like(x)
    with armed(block, [delta]):
        out = block(x)
    b = block
    branch = b.bn3(b.conv3(F.relu(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x + delta))))))))
    assert torch.allclose(out, F.relu(branch + b.downsample(x)), atol=1e-5)
