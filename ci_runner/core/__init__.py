"""The bottom layer: facts every stage shares (Hub references, ...). Imports nothing above it."""
