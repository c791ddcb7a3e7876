"""Preloaded by the verifier's forkserver: importing it warms the parser once for all workers.

Never imported by the calling process (that would load sympy there for nothing).
"""

from oreal.verify.equivalence import warm

warm()
