"""The sandbox market: a deterministic simulated Solana market and local servers that speak the real
wire formats of Helius, Jupiter, DexScreener, RugCheck and Solana JSON-RPC (shared/API-FORMATS.md).

The same client code talks to these servers and to mainnet; only base URLs and keys differ.
"""
