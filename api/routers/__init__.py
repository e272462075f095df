"""The v1 API's routes, one module per actor: `orders` (the order system), `suppliers`,
`catalog` (SKUs, availability, back-in-stock alerts), `customers` (signed links) and
`operations`. Each handler hands the request to the service layer (`admission`) and sets the
status its answer stands for; errors are mapped to statuses in `api.errors`."""
