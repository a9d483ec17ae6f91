"""MQTT delivery: the topic tree, the durable outbox, and the publisher that drains it."""
