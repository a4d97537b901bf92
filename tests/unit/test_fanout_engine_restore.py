"""Asking for watermarks waits out a leader that has just died (a fan-out restoring its state, an adapter
reading the registry), and raises anything else at once."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.governance import reading

pytestmark = pytest.mark.unit


STATE = TopicPartition("ns.fanout.state", 0)


def _no_wait(_seconds: float) -> None:
    pass


class _Reader:
    """Answers watermark requests with the given failures first, then (5, 42)."""

    def __init__(self, *failures: int) -> None:
        self.failures = list(failures)
        self.asked = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        self.asked += 1
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return 5, 42


def test_a_lost_leader_is_waited_out() -> None:
    reader = _Reader(KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert reading.patient_watermarks(reader, STATE, sleep=_no_wait) == (5, 42)
    assert reader.asked == 4


def test_a_refusal_is_raised_at_once() -> None:
    reader = _Reader(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        reading.patient_watermarks(reader, STATE, sleep=_no_wait)
    assert reader.asked == 1


def test_patience_ends() -> None:
    reader = _Reader(*([KafkaError._TRANSPORT] * 50))
    with pytest.raises(KafkaException):
        reading.patient_watermarks(reader, STATE, patience=0.0, sleep=_no_wait)
    assert reader.asked == 1
