"""Activities: the only code that touches the store or the network."""
