# The coordination core: pure, sans-IO. See docs/PROTOCOL.md and docs/CORE.md.
