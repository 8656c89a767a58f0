"""structlog set-up, the one redaction processor, batched line output."""
