"""The detections that opened an unauthorized change (`unauthorized_detections`), and the
business services the CMDB projection says a CI supports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from shared.cmdb import reads
from shared.uow import TransactionStore


class PostgresUnauthorizedDetections(TransactionStore):
    """`UnauthorizedDetections` on the unit of work's connection, scoped to its tenant."""

    async def seen(self, detection_id: uuid.UUID) -> bool:
        found: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM unauthorized_detections"
            " WHERE tenant_id = $1 AND detection_id = $2)",
            self._tenant,
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
        await self._conn.execute(
            "INSERT INTO unauthorized_detections (tenant_id, detection_id, change_id, ci_id,"
            " found_by, detected_at) VALUES ($1, $2, $3, $4, $5, $6)",
            self._tenant,
            detection_id,
            change_id,
            ci_id,
            found_by,
            detected_at,
        )

    async def services_of(self, ci_id: uuid.UUID) -> Sequence[str]:
        return await reads.services_of_ci(self._conn, self._tenant, str(ci_id))
