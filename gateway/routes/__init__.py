"""The REST API's routes beyond the public log routes of gateway.api, one module per resource."""
