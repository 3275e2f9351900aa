"""The detections that opened an unauthorized change (`unauthorized_detections`), and the
business services the CMDB projection says a CI supports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from shared.cmdb import reads
from shared.db import Connection


class _Unit(Protocol):
    @property
    def conn(self) -> Connection: ...
    @property
    def tenant_id(self) -> str: ...


class PostgresUnauthorizedDetections:
    """`UnauthorizedDetections` on the unit of work's connection, scoped to its tenant."""

    def __init__(self, uow: _Unit) -> None:
        self._uow = uow

    async def seen(self, detection_id: uuid.UUID) -> bool:
        found: bool = await self._uow.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM unauthorized_detections"
            " WHERE tenant_id = $1 AND detection_id = $2)",
            self._uow.tenant_id,
            detection_id,
        )
        return found

    async def record(
        self,
        detection_id: uuid.UUID,
        *,
        change_id: uuid.UUID,
        ci_id: uuid.UUID,
        found_by: str,
        detected_at: datetime,
    ) -> None:
        await self._uow.conn.execute(
            "INSERT INTO unauthorized_detections (tenant_id, detection_id, change_id, ci_id,"
            " found_by, detected_at) VALUES ($1, $2, $3, $4, $5, $6)",
            self._uow.tenant_id,
            detection_id,
            change_id,
            ci_id,
            found_by,
            detected_at,
        )

    async def services_of(self, ci_id: uuid.UUID) -> Sequence[str]:
        return await reads.services_of_ci(self._uow.conn, self._uow.tenant_id, str(ci_id))
