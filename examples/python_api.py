"""oreal from Python as TRL is called: a model object, a plain function, a list of dicts."""

import os

from oreal import OrealConfig, Trainer
from oreal.models import load_policy

model, tokenizer = load_policy(os.environ.get("OREAL_EXAMPLE_MODEL", "embedded"))
pairs = [(a, b) for a in range(8) for b in range(8)]
problems = [{"question": f"{a} + {b} = ?", "answer": str(a + b)} for a, b in pairs]


def brevity(completion_ids, **kwargs):  # TRL-style: keyword arguments, one float per completion
    return [-0.001 * len(ids) for ids in completion_ids]


args = OrealConfig(algorithm={"name": "grpo"}, data={"template": "boxed_example"})
args.train.steps = 3
trainer = Trainer(model, ["verifier", brevity], problems[:48], problems[48:], args, tokenizer)
print(trainer.train())
