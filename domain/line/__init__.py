"""A backordered line: its states, its promises, its choices, its effects and its record.

Pure models and rules, with no I/O: the line's workflow and its tests use them alike.
"""
