"""The base of every JSON request body, as the HTTP layer names it.

The model itself lives in `shared/models.py` so that application code can declare a validated
input (a tenant's settings, say) without importing the HTTP layer.
"""

from __future__ import annotations

from shared.models import RequestBody, lax_number_fields

__all__ = ["RequestBody", "lax_number_fields"]
