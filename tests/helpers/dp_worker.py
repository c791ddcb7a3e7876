"""Train a tiny model a few steps on scripted rollouts and save its final weights; run it
with ``torchrun --nproc_per_node N`` (or plain python for one rank).

    python tests/helpers/dp_worker.py MODEL_DIR OUT_DIR VARIANT [VARIANT ...]

Each variant trains in ``OUT_DIR/VARIANT`` (run directory written by the main rank).
``VARIANT_resumed`` trains one step, saves, and resumes in a new trainer for the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.scripted import ScriptedGenerator
from oreal.config_io import load_config
from oreal.models import load_tokenizer
from oreal.runtime import exit_finished_rank
from oreal.train import OrealConfig, Trainer

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
VARIANTS = {
    "oreal": ["algorithm.name=oreal", "train.steps=2"],
    "oreal_token_rm": [
        "algorithm.name=oreal",
        "token_rm.enabled=true",
        "token_rm.lr=1e-3",
        "token_rm.warmup_steps=0",
        "token_rm.policy_freeze_steps=1",
        "train.steps=3",  # 1 RM-only step + 2 policy updates
    ],
    "grpo": ["algorithm.name=grpo", "algorithm.params.kl_coef=0.01", "train.steps=2"],
    # the real rollout engine (fast CPU path, keyed sampling) instead of scripted responses
    "oreal_sampled": ["algorithm.name=oreal", "train.steps=2", "rollout.max_new_tokens=8"],
}


def main() -> None:
    torch.set_num_threads(1)
    model_dir, out_dir, *variants = sys.argv[1:]
    for variant in variants:
        base = variant.removesuffix("_resumed")
        config = load_config(
            OrealConfig,
            None,
            [
                f"model.name_or_path={model_dir}",
                "model.bf16_autocast=false",
                "model.device=cpu",
                "data.train=synthetic:arithmetic?n=32&seed=0",
                "data.eval=null",
                "rollout.prompts_per_step=4",
                "rollout.num_rollouts=4",
                f"reward.functions=[{CONFTEST}:has_digit]",
                "optim.lr=1e-3",
                "train.micro_batch_size=3",
                "train.plot=false",
                "train.samples_per_step=2",
                f"train.run_dir={Path(out_dir) / variant}",
                *VARIANTS[base],
            ],
        )
        tokenizer = load_tokenizer(model_dir)
        if base == "oreal_sampled":
            Trainer(args=config).train()
            continue
        if variant == base:
            Trainer(args=config, generator=ScriptedGenerator(tokenizer)).train()
            continue
        interrupted = Trainer(args=config, generator=ScriptedGenerator(tokenizer))
        interrupted.train_step()
        interrupted.save()
        interrupted.close()
        del interrupted
        run_dir = Path(out_dir) / variant
        Trainer(args=config, generator=ScriptedGenerator(tokenizer), resume_from=run_dir).train()


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():  # as torch asks; see docs/training.md
        torch.distributed.destroy_process_group()
        exit_finished_rank(0)  # no abort in interpreter finalization (oreal/runtime.py)
