"""Edge-to-cloud sync: sealed segments streamed over one WebSocket with credit flow control,
a durable edge ack ledger, and a cloud receiver with per-node storage and a SQLite catalog."""
