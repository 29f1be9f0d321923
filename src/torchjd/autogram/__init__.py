"""autogram"""

__all__: list[str] = []
