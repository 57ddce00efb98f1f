"""Contacts and calendars: the PIM sync, which names no backend (issue 17).

``model`` holds the small store protocol (``PimSource``, ``PimDestination``), ``fields``
reads the comparable fields of an iCalendar or vCard object, ``sync`` copies exactly
once, ``verify`` compares item by item, ``report`` shapes the JSON report.
"""
