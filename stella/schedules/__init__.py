"""Scheduled and event-triggered export launches (docs/schedules.md).

``model`` (what a schedule is), ``planning`` (pure: which slot is due), ``store`` (the
port) with ``sqlite`` (its SQLite adapter), ``scheduler`` (claims and launches) and
``launch`` (runs a launch's export and publishes it to its targets).
"""
