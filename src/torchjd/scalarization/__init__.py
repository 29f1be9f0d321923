"""scalarization"""

__all__: list[str] = []
