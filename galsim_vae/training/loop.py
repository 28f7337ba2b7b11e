"""Training loop: Adam, ReduceLROnPlateau, early stopping, checkpoints every epoch, resume.

Everything random (the shuffle, the augmentation, the reparameterisation noise) comes from one
``torch.Generator`` seeded by :attr:`TrainConfig.seed`, whose state is saved with each checkpoint:
a run interrupted and resumed gives the same weights as an uninterrupted one, up to floating-point
noise. torch's global random state is never touched.

A run folder holds:

- ``last.safetensors`` + ``last.state.pt``: the latest completed epoch (weights; optimiser,
  scheduler, generator and loop state);
- ``best.safetensors``: the epoch with the lowest validation loss (what you ship);
- ``history.json`` and ``learning_curve.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._utils import write_json
from ..checkpoint import load_state_dict, load_training_state, save_training_state, save_vae
from ..errors import GalSimIncompatibleValuesError, GalSimValueError
from ..nn import OUTPUT_REPRESENTATION, VAE
from .losses import VAELoss

__all__ = ["TrainConfig", "augment_batch", "check_images", "evaluate_loss", "train"]

# The loss terms an epoch's history records (those the loss gives).
_VALID_TERMS = ("rec", "bce", "chi2", "kl", "neg", "floor")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run.

    The paper's start learning rate (1e-6, 1e-7 for the Beta-VAE) needs hundreds of epochs; with
    BatchNorm and Adam(0.5, 0.999), 1e-3 converges in tens of epochs without instability in our
    runs, and ReduceLROnPlateau lowers it when the validation loss stalls.

    Attributes:
        epochs: maximum number of epochs. [default: 40]
        batch_size: images per step. [default: 64]
        lr: start learning rate. [default: 1e-3]
        beta1, beta2: Adam moments (the paper's). [default: 0.5, 0.999]
        lr_factor: ReduceLROnPlateau factor (the paper's: divide by 10). [default: 0.1]
        lr_patience: epochs without improvement before the rate drops. [default: 4]
        stop_patience: epochs without improvement before stopping. [default: 10]
        min_lr: the rate never drops below this. [default: 1e-6]
        grad_clip: largest gradient norm of a step (``clip_grad_norm_``). [default: 5.0]
        seed: seed of the run's generator. [default: 0]
        augment: random 90-degree rotations and flips about the stamp centre. [default: True]
        device: torch device. [default: "cpu"]
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    lr_factor: float = 0.1
    lr_patience: int = 4
    stop_patience: int = 10
    min_lr: float = 1e-6
    grad_clip: float = 5.0
    seed: int = 0
    augment: bool = True
    device: str = "cpu"


def check_images(x, representation="minmax") -> torch.Tensor:
    """Validate a batch of normalised stamps: float tensor ``(B, 1, S, S)``, in [0, 1] for the
    ``"minmax"`` representation."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3]:
        raise GalSimValueError("images must have shape (B, 1, S, S)", tuple(x.shape))
    if not torch.isfinite(x).all():
        raise GalSimValueError(
            "images contain NaN or infinite values", int((~torch.isfinite(x)).sum())
        )
    if representation == "minmax" and (x.min() < 0 or x.max() > 1):
        raise GalSimValueError(
            "images must be normalised to [0, 1]", (float(x.min()), float(x.max()))
        )
    return x.float()


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation by k*90 degrees and flip of each stamp, about the central pixel.

    The galaxy centre is pixel ``(S/2, S/2)``, which is the centre of the ``S-1`` square that
    starts at index 1: only that square is turned, so the centre stays on its pixel (the first row
    and column, sky noise, are kept as they are).
    """
    k = torch.randint(0, 8, (x.shape[0],), generator=generator, device="cpu")
    out = x.clone()
    inner = x[:, :, 1:, 1:]
    for r in range(4):
        for flip in (False, True):
            sel = (k == r + 4 * flip).nonzero().flatten().to(x.device)
            if len(sel) == 0:
                continue
            t = torch.rot90(inner[sel], r, dims=(2, 3))
            if flip:
                t = torch.flip(t, dims=(3,))
            out[sel, :, 1:, 1:] = t
    return out


@torch.no_grad()
def evaluate_loss(
    model: VAE,
    images: torch.Tensor,
    loss: VAELoss,
    *,
    sigma=None,
    target=None,
    batch_size=256,
    device="cpu",
) -> dict:
    """Mean loss terms over ``images`` in eval mode (latents at their means); ``sigma``, each
    stamp's noise, for the ``gauss`` loss; ``target``, what the reconstructions are compared
    with (default: the images themselves)."""
    model.eval()
    tot = {}
    for i in range(0, len(images), batch_size):
        xb = images[i : i + batch_size].to(device)
        tb = xb if target is None else target[i : i + batch_size].to(device)
        sb = None if sigma is None else sigma[i : i + batch_size].to(device)
        recon, mu, logvar = model(xb)
        for k, v in loss.terms(recon, tb, mu, logvar, sb).items():
            tot[k] = tot.get(k, 0.0) + float(v) * len(xb)
    return {k: v / len(images) for k, v in tot.items()}


def train(
    model: VAE,
    train_images: torch.Tensor,
    valid_images: torch.Tensor,
    *,
    loss: VAELoss,
    out_dir,
    config: TrainConfig = TrainConfig(),
    pixel_scale: float = 0.03,
    dataset: dict | None = None,
    resume: bool = True,
    progress: bool = True,
    on_epoch=None,
    max_seconds: float | None = None,
    train_sigma: torch.Tensor | None = None,
    valid_sigma: torch.Tensor | None = None,
    init: str | None = None,
    train_target: torch.Tensor | None = None,
    valid_target: torch.Tensor | None = None,
) -> list[dict]:
    """Train ``model`` and checkpoint every epoch in ``out_dir``.

    Parameters:
        model: a :class:`~galsim_vae.nn.VAE` (fresh, or any state: ``resume`` replaces it).
        train_images, valid_images: normalised stamps ``(N, 1, S, S)``, in the representation
            of ``loss`` (:attr:`VAELoss.representation`).
        loss: the :class:`~galsim_vae.training.losses.VAELoss`.
        out_dir: run folder.
        config: :class:`TrainConfig`.
        pixel_scale: arcsec/px of the stamps, stored with the weights.
        dataset: summary of the training data, stored with the weights.
        resume: continue from ``out_dir/last.*`` when present. [default: True]
        progress: show progress bars. [default: True]
        on_epoch: called with the history after each epoch (e.g. to plot). [default: None]
        max_seconds: stop after the epoch during which this much time has passed; rerunning
            resumes. [default: None, no limit]
        train_sigma, valid_sigma: each stamp's noise sigma ``(N,)`` in the normalised units,
            for the ``gauss`` loss. [default: None]
        init: the checksum (``sha256``) of the weights ``model`` was initialised from, when it
            was (fine-tuning); part of the run's identity, so a resume with other starting
            weights is refused. [default: None]
        train_target, valid_target: what the reconstructions are compared with, normalised as
            the stamps, when not the stamps themselves: the noiseless truths of simulated stamps
            (:meth:`StampDataset.truth_tensor`), gauss loss only. Noise has zero mean, so
            ``chi2(recon, stamp)`` and ``chi2(recon, truth)`` differ on average by a constant
            for a decoder that does not see the noise; the truth removes the noise from the
            gradients and the reward for reproducing it. The encoder still sees the noisy stamp.
            Both or neither. [default: None, the stamps]

    Returns:
        list of dict: one entry per epoch (``epoch``, ``train_loss``, ``valid_loss``, ``lr``, ...).
    """
    train_images = check_images(train_images, loss.representation)
    valid_images = check_images(valid_images, loss.representation)
    if loss.kind == "gauss":
        for name, x, sg in (
            ("train", train_images, train_sigma),
            ("valid", valid_images, valid_sigma),
        ):
            if sg is None or sg.shape != (len(x),) or not bool(torch.all(sg > 0)):
                raise GalSimValueError(
                    f"the gauss loss needs a positive noise sigma per {name} stamp",
                    None if sg is None else tuple(sg.shape),
                )
        train_sigma, valid_sigma = train_sigma.float(), valid_sigma.float()
    if (train_target is None) != (valid_target is None):
        raise GalSimValueError("give both train_target and valid_target, or neither", None)
    if train_target is not None:
        if loss.kind != "gauss":
            raise GalSimValueError("a noiseless target needs the gauss loss", loss.kind)
        for name, x, t in (
            ("train", train_images, train_target),
            ("valid", valid_images, valid_target),
        ):
            if tuple(t.shape) != tuple(x.shape) or not bool(torch.isfinite(t).all()):
                raise GalSimValueError(
                    f"the {name} target must be finite and of the {name} stamps' shape",
                    tuple(t.shape),
                )
        train_target, valid_target = train_target.float(), valid_target.float()
    if loss.floor and train_target is None:
        raise GalSimValueError(
            "the floor term compares with the noiseless truths: give train_target and "
            "valid_target (train --target truth)",
            loss.floor,
        )
    if OUTPUT_REPRESENTATION[model.config.output] != loss.representation:
        expected = [o for o, r in OUTPUT_REPRESENTATION.items() if r == loss.representation]
        raise GalSimValueError(
            f"the {loss.kind} loss takes a decoder with {' or '.join(expected)} output",
            model.config.output,
        )
    if train_images.shape[2] != model.config.stamp_size:
        raise GalSimValueError(
            f"stamps are {train_images.shape[2]} px, the model takes {model.config.stamp_size}",
            train_images.shape[2],
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(config.device)
    model.to(dev)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    history, best, bad, epoch0 = [], float("inf"), 0, 0
    last, state_file = out / "last.safetensors", out / "last.state.pt"
    # What makes a run this run: resuming with another of these would mix two runs' losses.
    identity = {
        "loss": loss.kind,
        "loss_param": float(loss.param),
        "representation": loss.representation,
        "architecture": json.loads(model.config.to_json()),
        "dataset": (dataset or {}).get("file"),
        "n_train": int(len(train_images)),
        "n_valid": int(len(valid_images)),
    }
    if init is not None:
        identity["init"] = str(init)
    if train_target is not None:
        identity["target"] = "truth"
    if loss.positivity:  # the negative part's chi2 in the loss
        identity["positivity"] = float(loss.positivity)
    if loss.floor:  # the truth's empty pixels' chi2 in the loss
        identity["floor"] = float(loss.floor)
    if (dataset or {}).get("with_low_snr"):  # the rows below the SNR cut trained on too
        identity["with_low_snr"] = True
    identity = json.loads(json.dumps(identity, sort_keys=True))  # as stored: lists, not tuples
    if not (resume and state_file.is_file()):
        old = [f.name for f in (last, out / "best.safetensors", state_file) if f.is_file()]
        if old:  # a run without its state (or resume=False): never trained over
            raise GalSimValueError(
                f"{out} holds another run ({', '.join(old)})"
                + (" but no training state to resume from" if resume else " and resume is off")
                + "; use another output folder or remove them",
                str(out),
            )
    if resume and state_file.is_file():
        st = load_training_state(state_file)
        was = json.loads(st["identity"]) if "identity" in st else None
        if was is not None and was != identity:
            diff = {
                k: (was.get(k), identity.get(k))
                for k in set(was) | set(identity)
                if was.get(k) != identity.get(k)
            }
            raise GalSimIncompatibleValuesError(
                f"{out} is a run of other settings or data; resuming would mix them (use "
                "another output folder). Differences (run, now): "
                + "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items()),
                **{k: v[1] for k, v in diff.items() if k not in ("architecture", "init")},
            )
        if "model" in st:  # written with the state in one atomic step
            tensors = st["model"]
        else:  # older runs: the weights file, which must be of the state's epoch
            if not last.is_file():
                raise GalSimValueError("the run's last.safetensors is missing", str(last))
            tensors, meta = load_state_dict(last)
            if int(meta.get("epoch", st["epoch"])) != int(st["epoch"]):
                raise GalSimValueError(
                    f"{last} is of epoch {meta.get('epoch')} but the training state of epoch "
                    f"{st['epoch']} (interrupted between the two writes); cannot resume",
                    str(out),
                )
        model.load_state_dict(tensors)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        gen.set_state(st["generator"])
        history = json.loads(st["history"])
        best, bad, epoch0 = float(st["best"]), int(st["bad"]), int(st["epoch"])
        model.to(dev)
    save_kw = dict(
        representation=loss.representation,
        pixel_scale=pixel_scale,
        loss=loss.kind,
        loss_param=loss.param,
        dataset=dataset,
        extra={
            "train_config": asdict(config),
            **({"init_sha256": init} if init else {}),
            **({"target": "truth"} if train_target is not None else {}),
            **({"positivity": float(loss.positivity)} if loss.positivity else {}),
            **({"floor": float(loss.floor)} if loss.floor else {}),
        },
    )

    def save_state(epoch):
        # One atomic file with the weights and everything else a resume needs (model on CPU).
        model.cpu()
        save_training_state(
            state_file,
            {
                "model": model.state_dict(),
                "identity": json.dumps(identity, sort_keys=True),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "history": json.dumps(history),
                "best": best,
                "bad": bad,
                "epoch": epoch,
            },
        )
        model.to(dev)

    if not (resume and state_file.is_file()):  # a fresh run
        # The run's state before its first epoch: a kill during epoch 1 (or between its weights
        # and its state) leaves a run that resumes, not one refused as "another run's weights".
        save_state(0)
    n = len(train_images)
    t_start = time.perf_counter()
    for epoch in range(epoch0 + 1, config.epochs + 1):
        if bad >= config.stop_patience:
            break
        if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
            break
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        run = 0.0
        bar = tqdm(
            range(0, n, config.batch_size),
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
        )
        for i in bar:
            idx = perm[i : i + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two images
                continue
            xb = train_images[idx]
            tb = None if train_target is None else train_target[idx]
            if config.augment:
                if tb is None:
                    xb = augment_batch(xb, gen)
                else:  # the same turn for a stamp and its target
                    xb, tb = augment_batch(torch.cat([xb, tb], 1), gen).split(1, 1)
            xb = xb.to(dev)
            tb = xb if tb is None else tb.to(dev)
            # The reparameterisation noise comes from the run's (CPU) generator on any device.
            mu, logvar = model.encoder(xb)
            eps = torch.randn(mu.shape, generator=gen).to(dev)
            recon = model.decoder(mu + eps * torch.exp(0.5 * logvar))
            sb = None if train_sigma is None else train_sigma[idx].to(dev)
            lval = loss(recon, tb, mu, logvar, sb)
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(lval):
                raise GalSimValueError(
                    f"training diverged at epoch {epoch} (loss {float(lval)}); lower --lr or "
                    "resume from the last checkpoint",
                    float(lval),
                )
            lval.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            lv = float(lval.detach())
            run += lv * len(idx)
            bar.set_postfix(loss=f"{lv:.4f}")
        bar.close()
        v = evaluate_loss(
            model, valid_images, loss, sigma=valid_sigma, target=valid_target, device=dev
        )
        sched.step(v["loss"])
        improved = v["loss"] < best
        best, bad = (v["loss"], 0) if improved else (best, bad + 1)
        history.append(
            {
                "epoch": epoch,
                "train_loss": run / n,
                "valid_loss": v["loss"],
                **{f"valid_{k}": v[k] for k in _VALID_TERMS if k in v},
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
        )
        model.cpu()
        if improved:
            save_vae(out / "best.safetensors", model, epoch=epoch, **save_kw)
        save_vae(last, model, epoch=epoch, **save_kw)
        save_state(epoch)
        write_json(out / "history.json", history)
        if progress:
            h = history[-1]
            tqdm.write(
                f"epoch {epoch}: train {h['train_loss']:.5f} valid {h['valid_loss']:.5f} "
                f"lr {h['lr']:.1e} ({h['seconds']:.0f} s)"
            )
        if on_epoch is not None:
            on_epoch(history)
    model.cpu().eval()
    return history
