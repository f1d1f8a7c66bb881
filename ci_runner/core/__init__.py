"""The bottom layer: facts every layer shares (Hub references, ...). Imports nothing above it."""
