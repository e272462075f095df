"""The `backorders` command line: `backorders dev` runs the embedded stack, `backorders demo`
drives a burst of backorders through the HTTP API (see `cli.main`)."""
