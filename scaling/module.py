"""The LightningModule: next-token objective, AdamW, the trial's LR schedule, validation loss."""

from __future__ import annotations

import lightning as L
import torch

from scaling.model import GPT
from scaling.spec import TrialSpec


class Diverged(RuntimeError):
    """The training loss stopped being finite."""


class GPTModule(L.LightningModule):
    def __init__(self, trial: TrialSpec):
        super().__init__()
        self.trial = trial
        self.model = GPT(trial.gpt_config)
        self.val_loss: float | None = None
        self._val_sum = torch.zeros(())
        self._val_count = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        _, loss = self.model(x, y)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        _, loss = self.model(x, y)
        self._val_sum = self._val_sum.to(loss.device) + loss.detach().float() * y.numel()
        self._val_count += y.numel()

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_count = torch.zeros((), device=self.device), 0

    def on_validation_epoch_end(self) -> None:
        # Each data-parallel rank saw its share of the windows: add up the sums and counts.
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(
            torch.tensor(float(self._val_count), device=self.device), reduce_op="sum"
        )
        if count.item():  # Lightning's sanity check may run no batch at all
            self.val_loss = (total / count).item()

    def configure_optimizers(self):
        train = self.trial.train
        model = self.model
        # Weight decay on matrices only (the tied embedding among them, as in nanoGPT), not on
        # LayerNorm gains.
        matrices = [p for p in model.parameters() if p.dim() >= 2]
        vectors = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}]
        width_mult = model.config.width_mult
        if width_mult != 1:
            # µP (Tensor Programs V, for Adam): the hidden matrices' LR divided by width_mult;
            # the embeddings (input-like) and the gains keep the base LR. AdamW decays by
            # lr·weight_decay, so the hidden matrices' weight decay is multiplied back (as the
            # `mup` package's MuAdamW does): each step decays them as at the base width.
            embeddings = [
                p for name, p in model.named_parameters() if name in model.embedding_names
            ]
            groups[:1] = [
                {
                    "params": model.hidden_matrices(),
                    "lr": train.lr / width_mult,
                    "weight_decay": train.weight_decay * width_mult,
                },
                {"params": embeddings},
            ]
        optimizer = torch.optim.AdamW(
            groups,
            lr=train.lr,
            weight_decay=train.weight_decay,
            betas=(train.beta1, train.beta2),
            fused=self.device.type == "cuda",
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: self.trial.lr_factor(s))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_start(self) -> None:
        # A resumed optimizer holds the LR its checkpoint's schedule set for the next step. A
        # branch resumes its trunk's checkpoint under its own schedule: set this run's LR.
        scheduler = self.lr_schedulers()
        assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
        factor = self.trial.lr_factor(self.trainer.global_step)
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * factor
