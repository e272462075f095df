"""The workflow of one backordered line (`workflow.BackorderLineWorkflow`), split by concern:

    run.py       one run: its input, its book (`domain.line.book`), calls, messages, details
    life.py      queued and confirmed, shipped, cancelled and refunded, deadlines
    choices.py   offers, an offer taken, a substitute taken
    order.py     a line of a ship-complete order
    workflow.py  the workflow class: the run loop and the signal, Update and query handlers

This file imports nothing, like `workflows/__init__.py`: see there why.
"""
