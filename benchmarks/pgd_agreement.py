"""Our PGD-20 against torchattacks' PGD on one checkpoint: do two implementations agree?

    python benchmarks/pgd_agreement.py checkpoints/mini-pgd10-eps8-seed0 15 --n 1000

Both attacks run on the same model (eval mode, fp32) and the same seeded subset of `--n` test
images: ε = 8/255, step 2/255 (ε/4), 20 steps, uniform random start, no restarts
(torchattacks.PGD(eps=8/255, alpha=2/255, steps=20, random_start=True)). The random starts
differ, so a few tenths of a point of difference is expected on 1,000 images; more points to a
bug. Needs the `compare` extra (`pip install -e .[compare]`). Writes docs/results/pgd_agreement.md.
"""

from __future__ import annotations

import click
import torch
import torchattacks
from common import write_result

from robdrop.analysis import evaluate_run, fixed_test_subset
from robdrop.data import iterate_eval
from robdrop.training.factories import resolve_device
from robdrop.training.runs import Run


def torchattacks_accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    seed: int,
    batch_size: int,
    device: torch.device,
) -> float:
    """Accuracy under torchattacks.PGD (ε in /255, step ε/4, 20 steps, random start)."""
    attack = torchattacks.PGD(
        model, eps=eps / 255, alpha=eps / 4 / 255, steps=20, random_start=True
    )
    torch.manual_seed(seed)
    correct = 0
    for xb, yb in iterate_eval(x, y, batch_size, device):
        adv = attack(xb, yb)
        with torch.no_grad():
            correct += (model(adv).argmax(1) == yb).sum().item()
    return correct / len(y)


@click.command()
@click.argument("run_path", type=click.Path(exists=True, file_okay=False))
@click.argument("epoch", type=int)
@click.option("--n", default=1000, help="Test images (a subset drawn with --seed).")
@click.option("--seed", default=0)
@click.option("--eps", default=8.0, help="Budget in /255; the step is ε/4.")
@click.option("--data-dir", help="Dataset folder (default: the run's).")
@click.option("--device", default="auto")
def main(
    run_path: str, epoch: int, n: int, seed: int, eps: float, data_dir: str | None, device: str
) -> None:
    run, device = Run(run_path), resolve_device(device)
    ours = evaluate_run(
        run, ["pgd20"], [epoch], n=n, seed=seed, eps255=eps, device=device, data_dir=data_dir
    )["accuracy"].item()
    model = run.load(epoch, device)[0]
    x, y = fixed_test_subset(run, n, seed, data_dir)
    theirs = torchattacks_accuracy(model, x, y, eps, seed, run.config.eval_batch_size, device)
    body = (
        f"Run `{run.name}`, epoch {epoch}; {len(y)} test images (seed {seed}); PGD-20, "
        f"ε = {eps:g}/255, step {eps / 4:g}/255, uniform random start, eval mode, fp32.\n\n"
        f"| implementation | PGD-20 accuracy (%) |\n|---|---|\n"
        f"| robdrop | {100 * ours:.2f} |\n| torchattacks {torchattacks.__version__} | "
        f"{100 * theirs:.2f} |\n\nDifference (robdrop − torchattacks): "
        f"{100 * (ours - theirs):+.2f} points.\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('pgd_agreement', body)}")


if __name__ == "__main__":
    main()
