"""The reporting service's pure rules: the ledger's Merkle log and its signed checkpoints."""
