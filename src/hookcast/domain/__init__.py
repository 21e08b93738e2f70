"""The pure core: no I/O, no clock or randomness of its own (both are passed in).

Nothing here imports from the rest of the package.
"""
