"""Workflows. They import only temporalio, the standard library and `domain`: no I/O here.

This file imports nothing on purpose: the worker's sandbox imports a workflow's module afresh
for every workflow run, package first, so each run of a line pays only for the modules it uses.
The list of workflows is `workflows.registry.WORKFLOWS`.
"""
