"""The config service's domain: pure rules, no I/O."""
