"""Helpers for the fault tests: network namespaces with links that can be cut
(`tests.support.netns`), a TCP proxy that delays, resets and black-holes connections
(`tests.support.proxy`), a private PostgreSQL that can be restarted (`tests.support.postgres`),
and a stack whose workers each run on a host of their own (`tests.support.cluster`)."""
