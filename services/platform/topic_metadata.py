"""Topic ids, partition counts and settings, asked of the broker over the raw protocol.

aiokafka 0.14 speaks Metadata up to v5, which predates topic ids (KIP-516, Metadata v10), and its
admin client's `describe_topics` returns no id either. A topic deleted and re-created under the
same name is a new log whose offsets start again at 0; only its id tells the two apart. So this
module sends Metadata v12 (flexible encoding, which aiokafka's protocol types support) through an
aiokafka client's own connections: the id is the broker's, not one we derive. Kafka 4.1 answers
Metadata v0-v13; a broker older than 3.x (no v12) is refused with `UnsupportedVersionError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from aiokafka.errors import KafkaError, UnsupportedVersionError, for_code
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.admin import DescribeConfigsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

METADATA_API_KEY = 3
TOPIC_RESOURCE = 2  # DescribeConfigs resource type of a topic
UNKNOWN_TOPIC_OR_PARTITION = 3
TIMESTAMP_TYPE = "message.timestamp.type"
RETENTION_MS = "retention.ms"


class Uuid(AbstractType[uuid.UUID]):  # type: ignore[misc]
    """Kafka's UUID: 16 bytes, most significant first (the all-zero UUID means none)."""

    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        return uuid.UUID(bytes=data.read(16))


class MetadataResponse_v12(Response):  # type: ignore[misc]
    API_KEY = METADATA_API_KEY
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = METADATA_API_KEY
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdsRequest(Request[MetadataRequest_v12]):  # type: ignore[misc]
    """Metadata of the named topics, ids included; never creates one (auto-creation off)."""

    API_KEY = METADATA_API_KEY

    def __init__(self, topics: Sequence[str]) -> None:
        self._topics = list(topics)

    def build(self, request_struct_class: type[MetadataRequest_v12]) -> MetadataRequest_v12:
        return request_struct_class(
            [(uuid.UUID(int=0), name, {}) for name in self._topics], False, False, {}
        )


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    replicas: int = 0  # the fewest replicas of any of its partitions


async def describe_topics(client: Any, topics: Sequence[str]) -> dict[str, TopicInfo]:
    """Id and partition count of each of `topics` that exists (a missing one is left out).

    `client` is an aiokafka client (`producer.client`, `consumer._client`), started."""
    response = await _send_any(client, TopicIdsRequest(topics))
    found: dict[str, TopicInfo] = {}
    for error_code, name, topic_id, _, partitions, _, _ in response.topics:
        if error_code == UNKNOWN_TOPIC_OR_PARTITION:
            continue
        if error_code != 0:
            raise for_code(error_code)(f"metadata of topic {name}")
        replicas = min((len(p[4]) for p in partitions), default=0)
        found[name] = TopicInfo(name, topic_id, len(partitions), replicas)
    return found


async def timestamp_types(client: Any, topics: Sequence[str]) -> dict[str, str]:
    """`message.timestamp.type` of each of `topics` that exists."""
    configs = await topic_configs(client, topics, (TIMESTAMP_TYPE,))
    return {topic: found[TIMESTAMP_TYPE] for topic, found in configs.items() if found}


async def topic_configs(
    client: Any, topics: Sequence[str], names: Sequence[str]
) -> dict[str, dict[str, str]]:
    """The settings `names` (their effective values) of each of `topics` that exists."""
    if not topics:
        return {}
    request = DescribeConfigsRequest([(TOPIC_RESOURCE, t, list(names)) for t in topics])
    response = await _send_any(client, request)
    found: dict[str, dict[str, str]] = {}
    for error_code, _, _, name, entries in response.resources:
        if error_code == UNKNOWN_TOPIC_OR_PARTITION:
            continue
        if error_code != 0:
            raise for_code(error_code)(f"configuration of topic {name}")
        found[name] = {entry[0]: entry[1] for entry in entries if entry[0] in names}
    return found


async def _send_any(client: Any, request: Any) -> Any:
    """Send to the first known broker that answers (any broker answers both requests)."""
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    if not nodes:
        raise KafkaError("no broker known yet")
    last: Exception | None = None
    for node in nodes:
        try:
            return await client.send(node, request)
        except NotImplementedError as error:  # the broker speaks no version we built
            raise UnsupportedVersionError(f"{type(request).__name__}: {error}") from error
        except KafkaError as error:
            last = error
    assert last is not None
    raise last
