"""Entry point of the verifier's host process: ``python -m oreal.verify._host_main``.

A module of its own (the package never imports it), so that running it as ``__main__`` does
not shadow an already imported :mod:`oreal.verify.host`; its workers import it again as their
main module, and the guard keeps that import inert.
"""

import json
import sys

from oreal.verify.host import serve

if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
