"""Concord: an inter-agency data exchange broker on Apache Kafka."""

__version__ = "0.1.0"
