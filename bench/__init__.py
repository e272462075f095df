"""The benchmark suite: `python -m bench` (README: Performance).

Each scenario runs against real parts on this machine: the Temporal dev server (the same
storage flags as `backorders dev`), the worker, the API and the simulators, each in a
process of its own as in production. Figures are compared with a baseline measured in the same
run on the same server, never with a number from another day.
"""
