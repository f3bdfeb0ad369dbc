"""HTTP entrypoints: parse, call one use case in gateway.use_cases, map the outcome."""
