"""The consumer's adapters: the views store (:mod:`consumer.adapters.mongo`, behind
:class:`consumer.ports.ViewRepository`) and the Kafka consumer's lag
(:mod:`consumer.adapters.kafka_lag`), each imported from its module."""
