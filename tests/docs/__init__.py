"""The docs test: README.md and docs/*.md run as written against a dev mesh."""
