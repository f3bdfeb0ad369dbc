"""HTTP entrypoints: parse, call one use case in gateway.service, map the outcome."""
