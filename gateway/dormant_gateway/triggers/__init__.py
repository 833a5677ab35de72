"""Triggers: validating their settings, schedules, HTTP routes; the cron and queue workers."""
