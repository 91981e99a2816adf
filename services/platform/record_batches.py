"""Keyed records handed to a producer as one record batch per topic partition at a time.

`producer.send` per record costs a future, a partitioner hash and an accumulator append each;
a batch costs a fraction of that per record. A partition's batches are submitted in the order
its records were added (a full batch leaves before the partition's next one opens), so each
partition keeps the order of `add`. The caller picks the partition.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder


class RecordBatches:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.open: dict[tuple[str, int], BatchBuilder] = {}
        self.acks: list[asyncio.Future[Any]] = []

    async def add(
        self,
        topic: str,
        partition: int,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        headers = [] if headers is None else headers  # aiokafka's builder takes a list only
        tp = (topic, partition)
        batch = self.open.get(tp)
        if (
            batch is None
            or batch.append(key=key, value=value, timestamp=None, headers=headers) is None
        ):
            if batch is not None:  # full: it leaves before the partition's next one
                await self._submit(tp, batch)
            batch = self.open[tp] = self.producer.create_batch()
            appended = batch.append(key=key, value=value, timestamp=None, headers=headers)
            assert appended is not None, "an empty batch takes any record the producer allows"

    async def submit_all(self) -> list[asyncio.Future[Any]]:
        """Submit the open batches; every submitted batch's acknowledgement, once each."""
        for tp, batch in self.open.items():
            await self._submit(tp, batch)
        self.open.clear()
        acks, self.acks = self.acks, []
        return acks

    async def _submit(self, tp: tuple[str, int], batch: BatchBuilder) -> None:
        self.acks.append(await self.producer.send_batch(batch, tp[0], partition=tp[1]))
