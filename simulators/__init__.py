"""Built-in simulators of the carrier, payments, notification and storefront services."""
