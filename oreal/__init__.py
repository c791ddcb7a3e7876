"""oreal: reinforcement learning from outcome rewards for LLM reasoning.

The data path, in the order of the sub-packages:
problems (``oreal.data``) -> rollouts (``oreal.rollout``) -> verdicts (``oreal.verify``,
``oreal.rewards``) -> advantages and losses (``oreal.algorithms``) -> update (``oreal.train``)
-> evaluation (``oreal.eval``).
"""

__version__ = "0.1.0"
