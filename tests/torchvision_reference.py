"""Runs in its own process (tests/test_port.py starts it): torchvision's native libraries crash when
loaded into a process that already holds TensorFlow's. Writes into OUT_DIR:
  resnet50.pth, resnet50.safetensors   random ResNet50 weights (BatchNorm statistics randomized too)
  resnet101.pth                         random ResNet101 weights (a wrong file for a ResNet50)
  reference.npz                         input x (NCHW), logits, and the stem/stage activations
  (NHWC)
"""

import sys

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file


def randomize_batch_norm(model, seed):
    """Random statistics and affine parameters; the residual branches' last BatchNorm gets small
    scales, as in trained ResNets, so activations and logits stay at a trained network's scale
    (|logit| ~ 10) instead of growing with depth."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                last = name.endswith("bn3") or name.endswith("downsample.1")
                m.weight.copy_(
                    (0.1 + 0.2 * torch.rand(n, generator=g))
                    if last
                    else (0.5 + torch.rand(n, generator=g))
                )
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model.eval()


def main(out_dir):
    torch.manual_seed(0)
    net = randomize_batch_norm(torchvision.models.resnet50(), 1)
    torch.save(net.state_dict(), f"{out_dir}/resnet50.pth")
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, f"{out_dir}/resnet50.safetensors"
    )
    torch.save(torchvision.models.resnet101().state_dict(), f"{out_dir}/resnet101.pth")
    stages = {}
    for name, module in [
        ("stem", net.maxpool),
        ("stage1", net.layer1),
        ("stage2", net.layer2),
        ("stage3", net.layer3),
        ("stage4", net.layer4),
    ]:
        module.register_forward_hook(
            lambda _m, _i, out, name=name: stages.__setitem__(
                name, out.numpy().transpose(0, 2, 3, 1)
            )
        )
    x = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    np.savez(
        f"{out_dir}/reference.npz",
        x=x,
        logits=logits,
        **{f"stage_{k}": v for k, v in stages.items()},
    )


if __name__ == "__main__":
    main(sys.argv[1])
