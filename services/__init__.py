"""creditledger services: the pure domain core, the writer, the read API and platform code."""
