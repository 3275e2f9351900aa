"""Local platform: Kafka and PostgreSQL started by the project."""
