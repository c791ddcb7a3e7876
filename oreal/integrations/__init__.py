"""oreal's verifier as a drop-in reward for other RL frameworks (``docs/integrations.md``).

* :mod:`oreal.integrations.trl` — a ``reward_funcs`` callable for TRL's ``GRPOTrainer``;
* :mod:`oreal.integrations.verl` — ``compute_score`` for verl's ``custom_reward_function``
  (loaded by file path and function name), and ``compute_score_batch`` for its batch manager;
* :mod:`oreal.integrations.openrlhf` — ``reward_func`` for OpenRLHF's ``--reward.remote_url``
  Python file.

None of them imports its framework: they take the arguments those frameworks pass. By default
they share one verifier per process (:func:`oreal.verify.verify_batch`: created on first use,
closed at exit); each module also has a factory for another mode, timeout or verifier.
"""
