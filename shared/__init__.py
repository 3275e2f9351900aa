"""What every service uses: events, outbox, inbox, database, settings, logging, metrics, HTTP."""
