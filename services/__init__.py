"""The platform's services: incident, change, config and reporting."""
