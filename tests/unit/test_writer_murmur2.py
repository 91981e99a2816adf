"""The writer's murmur2 and home partition are aiokafka's (Java's) exactly."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from services.writer.plan import home_partition, murmur2


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data)


@given(st.text(min_size=1, max_size=128), st.integers(1, 1000))
def test_the_home_partition_is_the_default_partitioners(account_id: str, count: int) -> None:
    expected = DefaultPartitioner()(account_id.encode(), list(range(count)), [])
    assert home_partition(account_id, count) == expected


def test_known_values() -> None:
    for n in range(300):
        key = f"acct_{n:06d}".encode()
        assert murmur2(key) == kafka_murmur2(key)
